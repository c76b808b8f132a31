# Renders one node's shoal.yaml and the cloud-init user data that installs Shoal, formats
# the data disk and runs the node under systemd. No provider and no I/O: the AWS module
# (../shoal_cluster) calls it once per node, and the test suite applies it offline.

locals {
  own_address = var.node_addresses[var.node_id]
  # The founding nodes' rpc addresses, the same list on every node; the node's own
  # rpc_listen is its entry in it (the controller requires that).
  seeds       = [for address in var.node_addresses : "${address}:${var.rpc_port}"]
  rpc_address = local.seeds[var.node_id]

  # Never credentials here: on AWS the nodes use their instance profile.
  cloud_storage = merge(
    var.cloud_storage_settings,
    { url = var.cloud_storage_url, region = var.cloud_storage_region },
    { for key, value in { endpoint = var.cloud_storage_endpoint } : key => value if value != "" },
  )

  config = merge(
    {
      node_id                    = var.node_id
      data_dir                   = var.data_dir
      log_level                  = var.log_level
      auto_create_topics         = var.auto_create_topics
      default_partitions         = var.default_partitions
      default_replication_factor = min(var.default_replication_factor, length(var.node_addresses))
      kafka_api = {
        listen    = "${var.listen_host}:${var.kafka_port}"
        advertise = "${local.own_address}:${var.kafka_port}"
      }
      admin_api = { listen = "${var.listen_host}:${var.admin_port}" }
      cluster = {
        rpc_listen = local.rpc_address
        seeds      = local.seeds
      }
      cloud_storage = local.cloud_storage
      tiers         = var.tiers
    },
    { for key, value in { log = var.log_settings } : key => value if length(value) > 0 },
  )

  # topic_tiers is an ordered mapping (first match wins) and yamlencode sorts keys, so it
  # is written by hand; JSON strings are valid YAML double-quoted scalars.
  topic_tiers_yaml = length(var.topic_tiers) == 0 ? "topic_tiers: {}\n" : join("", concat(
    ["topic_tiers:\n"],
    [for rule in var.topic_tiers : "  ${jsonencode(rule.pattern)}: ${jsonencode(rule.tier)}\n"],
  ))

  shoal_yaml = join("", [
    "# shoal.yaml for node ${var.node_id}, written by Terraform (module shoal_node_config).\n",
    yamlencode(local.config),
    local.topic_tiers_yaml,
  ])

  install_script = templatefile("${path.module}/templates/shoal-install.sh.tftpl", {
    install_dir    = local.shell_quoted.install_dir
    pip_spec       = local.shell_quoted.pip_spec
    pip_extra_args = join(" ", [for argument in var.pip_extra_args : "'${replace(argument, "'", "'\\''")}'"])
    python         = local.shell_quoted.python
    config_path    = local.shell_quoted.config_path
    data_dir       = local.shell_quoted.data_dir
    service_user   = local.shell_quoted.service_user
  })

  shell_quoted = { for name, value in {
    install_dir  = var.install_dir
    pip_spec     = var.shoal_pip_spec
    python       = var.python
    config_path  = var.config_path
    data_dir     = var.data_dir
    service_user = var.service_user
  } : name => "'${replace(value, "'", "'\\''")}'" }

  systemd_unit = templatefile("${path.module}/templates/shoal.service.tftpl", {
    node_id              = var.node_id
    install_dir          = var.install_dir
    config_path          = var.config_path
    data_dir             = var.data_dir
    service_user         = var.service_user
    open_files_limit     = var.open_files_limit
    stop_timeout_seconds = var.stop_timeout_seconds
  })

  data_disk_unit = templatefile("${path.module}/templates/shoal-data-disk.service.tftpl", {
    mode          = var.data_disk_mode
    data_dir      = var.data_dir
    service_user  = var.service_user
    ebs_volume_id = var.ebs_volume_id
  })

  cloud_init = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    node_id = var.node_id
    files = [
      { path = var.config_path, permissions = "0644", content = local.shoal_yaml },
      { path = "/usr/local/sbin/shoal-install", permissions = "0755", content = local.install_script },
      { path = "/usr/local/sbin/shoal-prepare-data-disk", permissions = "0755", content = file("${path.module}/templates/shoal-prepare-data-disk.sh") },
      { path = "/etc/systemd/system/shoal-data-disk.service", permissions = "0644", content = local.data_disk_unit },
      { path = "/etc/systemd/system/shoal.service", permissions = "0644", content = local.systemd_unit },
      { path = "/etc/sysctl.d/90-shoal.conf", permissions = "0644", content = file("${path.module}/templates/sysctl.conf") },
    ]
  })
}
