"""Remote kernels: kernel specs per compute server, and the provisioner that runs them there."""
