#!/usr/bin/env python3
"""A real gRPC health server for vigil's tests: grpcio with grpcio-health-checking's servicer.

Listens on 127.0.0.1 (a port the kernel picks), prints `READY <port>` on stdout, then takes one
command per line on stdin and answers each with `OK` (so the test knows it has taken effect):

    set <service> <SERVING|NOT_SERVING|UNKNOWN|SERVICE_UNKNOWN>   (service "-" is "")
    quit

It exits when stdin closes, so it never outlives the test that started it.

    --no-health        a gRPC server without the health service (every call: UNIMPLEMENTED)
    --cert F --key F   serve TLS with this PEM certificate chain and key (grpcs://)
    --client-ca F      with --cert: require a client certificate signed by this PEM CA (mutual TLS)
"""

import argparse
import os
import sys
from concurrent import futures

# This file's own name would hide the grpc_health package: import it from site-packages.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-health", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    args = parser.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = None
    if not args.no_health:
        servicer = health.HealthServicer()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if args.cert:
        with open(args.cert, "rb") as f:
            chain = f.read()
        with open(args.key, "rb") as f:
            key = f.read()
        if args.client_ca:
            with open(args.client_ca, "rb") as f:
                client_ca = f.read()
            credentials = grpc.ssl_server_credentials(
                [(key, chain)], root_certificates=client_ca, require_client_auth=True
            )
        else:
            credentials = grpc.ssl_server_credentials([(key, chain)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"READY {port}", flush=True)

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "set" and len(words) == 3 and servicer is not None:
            service = "" if words[1] == "-" else words[1]
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            servicer.set(service, status)
            print("OK", flush=True)
        else:
            print(f"ERROR unknown command {line.strip()!r}", flush=True)
    server.stop(grace=None)


if __name__ == "__main__":
    main()
