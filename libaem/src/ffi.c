// SPDX-License-Identifier: MIT
/*
 * The inline fast-path helpers of libaem.h as real, exported symbols, for
 * bindings that cannot compile C inline functions (FFI from other
 * languages).  Same names, same code: the header is included with
 * AEMINLINE defined empty.
 */
#define AEMINLINE
#include "libaem.h"
