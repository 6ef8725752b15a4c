"""The UDP backend, one file per file of flannel's pkg/backend/udp:

* ``udp.py``      - RegisterNetwork (udp_amd64.go): Backend config (Port), the lease
                    (PublicIP only: udp writes no BackendType), the TUN's network;
* ``network.py``  - the network (udp_network_amd64.go, cproxy_amd64.go): flannel0,
                    its /32 and the one route for the whole Network, the UDP socket,
                    the control socket, lease events turned into proxy commands;
* ``proxy.py``    - the data path (proxy_amd64.c): TUN <-> UDP in user space.
"""
