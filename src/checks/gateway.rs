//! `gateway`: see the module below.
