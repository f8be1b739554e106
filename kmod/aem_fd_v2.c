// SPDX-License-Identifier: GPL-2.0
/*
 * aem_fd_v2.ko: aem_fd.c as implementation 2 of AEM_SRC_FD, for the tests
 * of source implementations side by side (libaem/tests/source_impls.c).
 * Not installed by the DKMS package.
 */
#define AEM_FD_IMPL	2
#include "aem_fd.c"
