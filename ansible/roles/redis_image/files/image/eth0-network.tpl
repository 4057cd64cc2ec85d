{% comment %}systemd-networkd's eth0, rendered by Incus when the container is created
    (or copied). The operator sets user.rsf.network.address (address/prefix)
    and user.rsf.network.gateway to the address it chose and pinned on eth0:
    the container boots with it, without waiting for a DHCP lease. Without
    them (a plain `incus launch`), eth0 asks the bridge's DHCP server; the
    client identifier is the MAC address (unique per container), so
    containers made from one image never share a lease.{% endcomment %}
[Match]
Name=eth0

[Network]
{%- if config_get("user.rsf.network.address", "") != "" %}
Address={{ config_get("user.rsf.network.address", "") }}
Gateway={{ config_get("user.rsf.network.gateway", "") }}
DNS={{ config_get("user.rsf.network.gateway", "") }}
LinkLocalAddressing=no
IPv6AcceptRA=no
{%- else %}
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
ClientIdentifier=mac
UseDomains=yes
{%- endif %}
