# A stand-in for what a module creates: the file var.marker, there while applied.
variable "marker" { type = string }

resource "terraform_data" "svc" {
  input = var.marker
  provisioner "local-exec" {
    command = "touch ${self.input}"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.input}"
  }
}
