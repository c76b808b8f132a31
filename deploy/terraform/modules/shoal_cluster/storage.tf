# The cold tier: one bucket per cluster, private, encrypted with the cluster's KMS key.
# No lifecycle rule expires current objects: Shoal's own retention (tiers.*.retention_*)
# decides what is deleted. The lifecycle rules only clean up what Shoal leaves behind on
# purpose or by accident: noncurrent versions and abandoned multipart uploads.

resource "aws_kms_key" "shoal" {
  count                   = var.kms_key_arn == null ? 1 : 0
  description             = "Shoal cluster ${var.name}: cold-tier bucket and broker disks"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersThroughIam"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = local.tags
}

resource "aws_kms_alias" "shoal" {
  count         = var.kms_key_arn == null ? 1 : 0
  name          = "alias/${var.name}-shoal"
  target_key_id = aws_kms_key.shoal[0].key_id
}

resource "aws_s3_bucket" "cold_tier" {
  #checkov:skip=CKV_AWS_144:The bucket is Shoal's cold tier, not a backup; cross-region replication is a disaster-recovery choice left to the operator (docs/deploy.md, backup and recovery).
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; Shoal reads its own manifests.
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = merge(local.tags, { Name = local.bucket_name })
}

resource "aws_s3_bucket_public_access_block" "cold_tier" {
  bucket                  = aws_s3_bucket.cold_tier.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "cold_tier" {
  bucket = aws_s3_bucket.cold_tier.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "cold_tier" {
  bucket = aws_s3_bucket.cold_tier.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true # one KMS request per bucket key, not per segment
  }
}

resource "aws_s3_bucket_versioning" "cold_tier" {
  bucket = aws_s3_bucket.cold_tier.id
  versioning_configuration {
    status = var.bucket_versioning ? "Enabled" : "Suspended"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "cold_tier" {
  bucket     = aws_s3_bucket.cold_tier.id
  depends_on = [aws_s3_bucket_versioning.cold_tier]

  rule {
    id     = "abort-abandoned-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }
}

resource "aws_s3_bucket_logging" "cold_tier" {
  count         = var.bucket_access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.cold_tier.id
  target_bucket = var.bucket_access_log_bucket
  target_prefix = "s3-access/${local.bucket_name}/"
}

resource "aws_s3_bucket_policy" "cold_tier" {
  bucket     = aws_s3_bucket.cold_tier.id
  depends_on = [aws_s3_bucket_public_access_block.cold_tier]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyPlainHttp"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.cold_tier.arn, "${aws_s3_bucket.cold_tier.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}
