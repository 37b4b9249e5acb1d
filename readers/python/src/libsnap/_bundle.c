/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libsnap C library, compiled into the extension module as one translation
 * unit with hidden symbols, so the module needs no separately installed
 * libsnap.so. The sources are the repository's libsnap/src/ (pin.c last: it
 * defines a macro alias of its own).
 */
#include "../../../../libsnap/src/arrow.c"
#include "../../../../libsnap/src/control.c"
#include "../../../../libsnap/src/error.c"
#include "../../../../libsnap/src/gc.c"
#include "../../../../libsnap/src/pin.c"
#include "../../../../libsnap/src/publish.c"
#include "../../../../libsnap/src/segment.c"
#include "../../../../libsnap/src/store.c"
