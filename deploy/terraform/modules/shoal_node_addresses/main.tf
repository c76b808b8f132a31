# Fixed private IPv4 addresses of a cluster's nodes, decided before anything is created:
# every node's cluster.seeds names all founding nodes, so each node's user data needs the
# addresses of the others. Taking them from the subnets' CIDR blocks (known at plan time)
# rather than from created network interfaces keeps the seeds in the plan and leaves no
# dependency between the nodes. No provider: the test suite applies it offline.

locals {
  subnet_count   = length(var.subnet_cidr_blocks)
  subnet_indexes = [for node_id in range(var.node_count) : node_id % local.subnet_count]

  # Node i is the floor(i / subnet_count)-th node of its subnet.
  derived_addresses = [for node_id in range(var.node_count) : cidrhost(
    var.subnet_cidr_blocks[local.subnet_indexes[node_id]],
    var.first_host_number + floor(node_id / local.subnet_count),
  )]

  addresses = var.private_ips != null ? var.private_ips : local.derived_addresses
}
