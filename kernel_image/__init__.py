"""Build context of the kernel image (Dockerfile, rootfs script, rlm_kernel)."""
