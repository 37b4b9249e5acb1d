/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The process's registry of open store handles and the fork handlers.
 *
 * pthread_atfork handlers take every lock of every registered store (lock
 * order: see pin.c), so that a fork from any thread leaves the child
 * consistent.
 */
#define _GNU_SOURCE
#include <urcu-bp.h>

#include "internal.h"

static pthread_mutex_t g_stores_lock = PTHREAD_MUTEX_INITIALIZER;
static snap_store *g_stores;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) {
  pthread_mutex_lock(&g_stores_lock);
  for (snap_store *s = g_stores; s; s = s->next_store) pthread_mutex_lock(&s->lock);
  urcu_bp_call_rcu_before_fork();
  urcu_bp_before_fork();
  snap__control_atfork_lock();
  for (snap_store *s = g_stores; s; s = s->next_store) pthread_mutex_lock(&s->maps_lock);
}

static void fork_parent(void) {
  for (snap_store *s = g_stores; s; s = s->next_store)
    pthread_mutex_unlock(&s->maps_lock);
  snap__control_atfork_unlock();
  urcu_bp_after_fork_parent();
  urcu_bp_call_rcu_after_fork_parent();
  for (snap_store *s = g_stores; s; s = s->next_store) pthread_mutex_unlock(&s->lock);
  pthread_mutex_unlock(&g_stores_lock);
}

static void fork_child(void) {
  for (snap_store *s = g_stores; s; s = s->next_store)
    pthread_mutex_unlock(&s->maps_lock);
  snap__control_atfork_unlock();
  urcu_bp_after_fork_child();
  urcu_bp_call_rcu_after_fork_child();
  for (snap_store *s = g_stores; s; s = s->next_store) pthread_mutex_unlock(&s->lock);
  pthread_mutex_unlock(&g_stores_lock);
}

static void library_init_once(void) {
  /* The call_rcu worker thread is created by urcu on the first call_rcu(),
   * under a store lock; that respects the lock order above (store lock, then
   * urcu's), so it need not be started here, where attach time is spent. */
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void snap__library_init(void) { pthread_once(&g_once, library_init_once); }

void snap__store_register(snap_store *s) {
  pthread_mutex_lock(&g_stores_lock);
  s->next_store = g_stores;
  s->prev_store = NULL;
  if (g_stores) g_stores->prev_store = s;
  g_stores = s;
  pthread_mutex_unlock(&g_stores_lock);
}

void snap__store_unregister(snap_store *s) {
  pthread_mutex_lock(&g_stores_lock);
  if (s->prev_store)
    s->prev_store->next_store = s->next_store;
  else if (g_stores == s)
    g_stores = s->next_store;
  if (s->next_store) s->next_store->prev_store = s->prev_store;
  s->next_store = s->prev_store = NULL;
  pthread_mutex_unlock(&g_stores_lock);
}
