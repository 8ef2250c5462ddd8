variable "name" { type = string }
variable "marker" { type = string }

resource "terraform_data" "svc" {
  input = { name = var.name, marker = var.marker }
  provisioner "local-exec" {
    command = "echo up-${self.input.name} > ${self.input.marker}"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.input.marker}"
  }
}

output "url" { value = "http://127.0.0.1:9/${var.name}" }
output "info" { value = { name = var.name, n = 3 } }
output "token" {
  value     = "tok-${var.name}-5ecret"
  sensitive = true
}
