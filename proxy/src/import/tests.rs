//! Unit tests of the directive mappings: nginx text in, YAML and report out.

use super::*;
