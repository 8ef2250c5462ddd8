variable "watch" { type = string }
variable "out" { type = string }

resource "terraform_data" "copy" {
  triggers_replace = filesha256(var.watch)
  input            = var.out
  provisioner "local-exec" {
    command = "cp ${var.watch} ${self.input}"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -f ${self.input}"
  }
}
