//! Integration tests of camrig provisioning: the real `camrig-provision` binary, real
//! ssh-keygen, sfdisk and mtools on real disk image files, and the real block devices of
//! the machine for the refusal paths (nothing is ever written to them).

mod card_images;
mod flash_safety;
mod secrets_state;
mod site_validation;
mod support;
