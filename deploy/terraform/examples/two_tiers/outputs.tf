output "bootstrap_servers" {
  description = "bootstrap.servers for Kafka clients."
  value       = module.shoal.bootstrap_servers
}

output "admin_urls" {
  description = "Admin API of each node (/v1/status/ready, /metrics)."
  value       = module.shoal.admin_urls
}

output "bucket_name" {
  description = "The cold-tier bucket."
  value       = module.shoal.bucket_name
}
