/* SPDX-License-Identifier: MIT */
/*
 * Ten million active timers in one ring (10 Mi, whole chunks of the
 * kernel side's subscription table): timer_million.c with that count.
 * Subscribed in batches, each answered; 64 bytes a timer in the ring's
 * charge; all re-armed and fired once (on the module a million of them),
 * nothing dropped.
 */
#define TIMERS_DEFAULT	(10U << 20)
#include "timer_million.c"
