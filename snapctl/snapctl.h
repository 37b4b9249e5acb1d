/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapctl: shared declarations of the commands (one file each) and their helpers. */
#ifndef SNAPCTL_H
#define SNAPCTL_H

#include <libsnap/libsnap.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses. */
#define CTL_OK 0
#define CTL_FAIL 1  /* operational error */
#define CTL_USAGE 2 /* usage error */

/** Global state shared by every command. */
struct ctl {
  const char *store_path; /* --store, or NULL for $LIBSNAP_STORE / the default */
  const char *cmd;        /* command name, for messages */
};

/** One command: name, one-line summary, usage text and entry point. */
struct ctl_command {
  const char *name;
  const char *summary;
  const char *usage; /* full --help text */
  int (*run)(struct ctl *c, int argc, char **argv);
};

extern const struct ctl_command ctl_cmd_init, ctl_cmd_list, ctl_cmd_info, ctl_cmd_readers,
    ctl_cmd_gc, ctl_cmd_rollback, ctl_cmd_verify, ctl_cmd_export, ctl_cmd_doctor,
    ctl_cmd_publish, ctl_cmd_drop, ctl_cmd_compact, ctl_cmd_push, ctl_cmd_pull,
    ctl_cmd_unfollow;

/** One dataset of STORE/sync.state (written by writerd --push/--follow/--mirror). */
struct ctl_sync_row {
  char dataset[SNAP_DATASET_NAME_MAX + 1];
  uint64_t announced, announced_ns, local, pushed, bytes;
  char error[300];
};
/** Read STORE/sync.state: rows (free() them), the mode ("push", "follow",
 *  "mirror") and the remote. -1 when there is none. */
int ctl_sync_state(const char *store_path, struct ctl_sync_row **rows, size_t *n,
                   char *mode, size_t mcap, char *remote, size_t rcap);
/** Seconds since the announced version was published, while it is not local. */
double ctl_sync_lag_seconds(const struct ctl_sync_row *r);

/* ---------------------------------------------------------------- errors */

/** Print "snapctl: CMD: message" on stderr; returns CTL_FAIL. */
int ctl_fail(const struct ctl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Print "snapctl: CMD: message (see 'snapctl CMD --help')"; returns CTL_USAGE. */
int ctl_usage(const struct ctl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Report a library failure: the error's message, or snap_strerror(status). */
int ctl_fail_snap(const struct ctl *c, const char *what, int status,
                  const struct snap_error *err);

/**
 * Parse the command's options with getopt_long. Handles --help (prints usage,
 * *exit_code = 0) and unknown options (*exit_code = CTL_USAGE). The caller passes
 * long options without "help"; the function adds it. Returns the option character,
 * -1 at the end of options, or -2 when the command must exit with *exit_code.
 */
struct option;
int ctl_getopt(const struct ctl_command *cmd, struct ctl *c, int argc, char **argv,
               const char *shortopts, const struct option *longopts, int *exit_code);

/** Open the store (flags as for snap_store_open). Prints the error; CTL_OK or CTL_FAIL.
 */
int ctl_open(struct ctl *c, unsigned flags, snap_store **out);

/** Split "DATASET[@VERSION]" (version 0 = current). CTL_OK or CTL_USAGE (printed). */
int ctl_parse_target(struct ctl *c, const char *arg, char *dataset, size_t cap,
                     uint64_t *version);

/* Open the store read-only and pin DATASET[@VERSION] (the current version when
 * no version is given). On success the caller unpins and closes; on failure the
 * error is reported and nothing is left open. Returns 0 or the exit status. */
int ctl_pin_target(struct ctl *c, const char *arg, snap_store **store,
                   snap_snapshot **snap);
/** Parse a decimal integer (digits only, no sign, no wrap). 0 on success, -1 otherwise.
 */
int ctl_parse_u64(const char *s, uint64_t *out);
/** Parse an integer in lo..hi; else print "WHAT: 'S' is not an integer from LO to HI"
 *  as a usage error. CTL_OK or CTL_USAGE. */
int ctl_parse_range(const struct ctl *c, const char *what, const char *s, uint64_t lo,
                    uint64_t hi, uint64_t *out);

/**
 * snapctl doctor's segment checks (doctor_segments.c): pin every kept version
 * of the @p nds datasets as a reader would (size, header, checksum of header
 * and manifest), with @p deep also its data checksum and category codes.
 * Prints a finding per damaged version with its fix; returns how many, and adds
 * the pieces of advice it printed to *advice.
 */
int ctl_doctor_segments(snap_store *store, const struct snap_dataset_info *ds, size_t nds,
                        bool deep, int *advice);

/* --------------------------------------------------------- mounts, memory */

/**
 * The mount holding the absolute, symlink-free @p path (the longest matching mount
 * point of /proc/self/mountinfo; the top one when mounts are stacked): its mount
 * point, file system type and super options ("rw,size=...,huge=..."). Truncated to the
 * capacities. Returns 0, or -1 when mountinfo cannot be read or nothing matches.
 */
int ctl_find_mount(const char *path, char *mnt, size_t mcap, char *fstype, size_t fcap,
                   char *opts, size_t ocap);
/** As ctl_find_mount, for the mount an open file descriptor @p fd is on (its mount ID in
 *  /proc/self/fdinfo): for an O_PATH fd of a mount point, that mount itself. */
int ctl_fd_mount(int fd, char *mnt, size_t mcap, char *fstype, size_t fcap, char *opts,
                 size_t ocap);
/** The memory limit of this process's cgroup (v2, else v1) in bytes, and in @p where
 *  the file it came from; 0 when there is none. */
uint64_t ctl_cgroup_limit(char *where, size_t cap);

/** The record `snapctl init --huge` leaves in the store directory (CTL_MOUNT_RECORD:
 *  key=value lines, docs/format.md section 12). */
#define CTL_MOUNT_RECORD "mount"
/** Segments below this many bytes gain too little from huge pages for doctor to advise
 *  them (docs/design.md section 7.1). */
#define CTL_HUGE_ADVICE_BYTES (64ull << 20)

/* ------------------------------------------------------------- formatting */

/** "1.5 GiB", "12 B". Returns out. */
const char *ctl_bytes(char *out, size_t cap, uint64_t bytes);
/** Local time "YYYY-MM-DD HH:MM:SS" of a ns timestamp. */
const char *ctl_time_local(char *out, size_t cap, uint64_t ns);
/** UTC "YYYY-MM-DDTHH:MM:SS.fffffffffZ" of a ns timestamp. */
const char *ctl_time_iso(char *out, size_t cap, int64_t ns);
/** @p s single-quoted for a POSIX shell ('it'\''s'); truncated to @p cap (at least 3
 *  bytes; a path fits in 4 * PATH_MAX). Returns out. */
const char *ctl_shell_quote(char *out, size_t cap, const char *s);
/** Write s as a JSON string literal. */
void ctl_json_str(FILE *f, const char *s);
/** Command line of a process (NUL separators as spaces), or "?" when gone. */
const char *ctl_proc_cmdline(char *out, size_t cap, pid_t pid);
/** Process start time, ns since the epoch; 0 if unknown. */
uint64_t ctl_proc_start_ns(pid_t pid);

/* --------------------------------------------------------- aligned tables */

/** A table printed with columns padded to their widest cell. */
struct ctl_table {
  size_t ncols, ncells, cap;
  char **cells;
  const char *right; /* per column: 'r' right-aligned, 'l' left */
};
void ctl_table_init(struct ctl_table *t, size_t ncols, const char *align);
/** Append one cell (rows fill left to right). */
void ctl_table_cell(struct ctl_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctl_table_print(const struct ctl_table *t, FILE *f);
void ctl_table_free(struct ctl_table *t);

#endif /* SNAPCTL_H */
