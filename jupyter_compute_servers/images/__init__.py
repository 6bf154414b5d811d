"""Images: the catalogue of software servers run, and how kernels run in them."""
