/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash points for the fault-injection tests: the Nth point reached after
 * snap__crash_arm(N) kills the process (or calls the armed fault). The points
 * themselves sit in the write paths (publish.c, gc.c, drop.c).
 */
#include <signal.h>

#include "internal.h"

int snap__crash_countdown;
static int crash_hits;
static void (*crash_fault)(void);

void snap__crash_arm(int n) {
  snap__crash_countdown = n;
  crash_hits = 0;
  crash_fault = NULL;
}

void snap__fault_arm(int n, void (*fault)(void)) {
  snap__crash_arm(n);
  crash_fault = fault;
}

int snap__crash_points_hit(void) { return crash_hits; }

void snap__crash_point_slow(void) {
  crash_hits++;
  if (snap__crash_countdown > 0 && --snap__crash_countdown == 0) {
    if (crash_fault)
      crash_fault();
    else
      raise(SIGKILL);
  }
}
