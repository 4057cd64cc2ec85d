# RedisSentinelFormation image: eth0 gets its IPv4 address from the Incus
# bridge's DHCP server. The client identifier is the MAC address (unique per
# container), so containers made from one image never share a lease.
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
UseDomains=yes
