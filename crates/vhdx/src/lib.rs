//! VHDX virtual disks, GPT partitioning and the NTFS formatting step.
