"""Shared test doubles and real servers on loopback: clocks moved by hand, a fault-injecting
proxy and an ASGI server, a callback receiver, stolentee processes, SeaweedFS, a raw HTTP server
and a Remove.bg client written from Remove.bg's documentation."""
