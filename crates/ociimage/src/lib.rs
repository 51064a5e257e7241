//! OCI image layouts and docker-save archives: which layers, in which order.
