/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The library's version string. */
#include "internal.h"

const char *snap_version_string(void) {
#define SNAP_STR2(x) #x
#define SNAP_STR(x) SNAP_STR2(x)
  return SNAP_STR(SNAP_VERSION_MAJOR) "." SNAP_STR(SNAP_VERSION_MINOR) "." SNAP_STR(
      SNAP_VERSION_PATCH);
}
