output "addresses" {
  description = "Private IPv4 address of each node, indexed by node id."
  value       = local.addresses
}

output "subnet_indexes" {
  description = "Index into the subnet list of each node's subnet, indexed by node id (round-robin)."
  value       = local.subnet_indexes
}
