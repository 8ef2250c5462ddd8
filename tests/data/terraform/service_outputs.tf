# What the operator's Terraform flavor publishes: an endpoint URL and a sensitive output.
variable "name" { type = string }
variable "secret_word" {
  type      = string
  sensitive = true
}
output "url" { value = "http://127.0.0.1:9/${var.name}" }
output "token" {
  value     = var.secret_word
  sensitive = true
}
