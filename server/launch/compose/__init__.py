"""`xedge up`: the compose file resolved by the real Docker Compose (resolve.py), turned into local processes
(topology.py: the resolved model's xedge services; launcher.py: start them on loopback)."""
