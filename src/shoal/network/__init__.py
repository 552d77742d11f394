"""Node networking plumbing: network namespaces, CNI bridge attachments, and the iptables rules
for service VIPs, published ports and network isolation. Pure inputs (plain dataclasses), real
kernel effects; the agent decides what to plumb, these modules only do it."""
