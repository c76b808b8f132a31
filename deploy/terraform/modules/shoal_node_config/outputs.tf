output "shoal_yaml" {
  description = "The node's shoal.yaml."
  value       = local.shoal_yaml
}

output "cloud_init" {
  description = "The node's #cloud-config user data."
  value       = local.cloud_init
}

output "install_script" {
  description = "The install step cloud-init runs (also written to /usr/local/sbin/shoal-install)."
  value       = local.install_script
}

output "systemd_unit" {
  description = "The shoal.service unit."
  value       = local.systemd_unit
}

output "kafka_address" {
  description = "host:port clients are given for this node."
  value       = "${local.own_address}:${var.kafka_port}"
}

output "admin_url" {
  description = "Admin HTTP base URL of this node."
  value       = "http://${local.own_address}:${var.admin_port}"
}

output "rpc_address" {
  description = "host:port of this node's cluster RPC listener (cluster.rpc_listen)."
  value       = local.rpc_address
}

output "cluster_seeds" {
  description = "cluster.seeds: the rpc address of every founding node, the same list on every node."
  value       = local.seeds
}
