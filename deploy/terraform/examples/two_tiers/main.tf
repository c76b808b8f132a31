# Two retention tiers. Every topic keeps its newest data on the nodes' NVMe for 6 hours
# and everything in the bucket; the tier decides how long the bucket keeps it:
#   default  - 7 days in total,
#   year     - 1 year, uploaded zstd-compressed (audit.* and billing.* topics).
# A topic can also pick a tier itself with the topic config shoal.tier=year.
module "shoal" {
  source = "../../modules/shoal_cluster"

  name                = var.name
  subnet_ids          = var.subnet_ids
  kafka_allowed_cidrs = var.kafka_allowed_cidrs
  instance_type       = "i4i.xlarge"

  tiers = {
    default = {
      local_retention_ms    = "6h"
      local_retention_bytes = "100GiB"
      retention_ms          = "7d"
      retention_bytes       = "-1"
    }
    year = {
      local_retention_ms    = "6h"
      local_retention_bytes = "100GiB"
      retention_ms          = "365d"
      retention_bytes       = "-1"
      upload_compression    = "zstd"
    }
  }

  topic_tiers = [
    { pattern = "audit.*", tier = "year" },
    { pattern = "billing.*", tier = "year" },
  ]

  # Seal and upload a quiet partition's open segment within 5 minutes.
  cloud_storage_settings = {
    upload_interval = "5m"
    cache_size      = "50GiB"
  }
}
