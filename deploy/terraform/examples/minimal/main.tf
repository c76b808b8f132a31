# A minimal 3-node Shoal deployment: defaults everywhere (i4i.large with local NVMe,
# one encrypted bucket, 6 h hot / 7 d total retention).
module "shoal" {
  source = "../../modules/shoal_cluster"

  name                = var.name
  subnet_ids          = var.subnet_ids
  kafka_allowed_cidrs = var.kafka_allowed_cidrs
}
