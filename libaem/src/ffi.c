// SPDX-License-Identifier: MIT
/*
 * The inline fast-path helpers of libaem.h as real, exported symbols, for
 * bindings that cannot compile C inline functions (FFI from other
 * languages).  Same names, same code: the header is included with
 * AEMINLINE defined empty.
 */
#define AEMINLINE
#include "libaem.h"

/*
 * struct aem_lane is the caller's memory in LIBAEM_1.3's exported lane
 * helpers: its size and its fields' offsets are part of the ABI.
 */
#include <stddef.h>
_Static_assert(sizeof(struct aem_lane) == 64, "struct aem_lane keeps LIBAEM_1.3's size");
_Static_assert(offsetof(struct aem_lane, sub_id) == 40 && offsetof(struct aem_lane, malformed) == 60,
	       "struct aem_lane keeps LIBAEM_1.3's offsets");
