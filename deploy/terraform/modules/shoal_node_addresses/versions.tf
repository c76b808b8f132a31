# Pure computation: no provider, so it can be applied offline (the test suite does).
terraform {
  required_version = ">= 1.0"
}
