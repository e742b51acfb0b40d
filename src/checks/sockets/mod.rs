//! The `sockets` check: the pod's TCP sockets as the kernel lists them (vigil shares the pod's
//! network namespace, so these are the gateway's): connections per watched remote port and
//! state, the accept queue of each listening port, and the namespace's listen overflows.

mod procfs;
