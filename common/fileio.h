/*
 * fileio.h: whole-file reads with a size cap, and crash-safe writes.
 *
 * Every file Condenser writes that a later run depends on (models, artifacts, keys, state
 * snapshots) goes through cnd_file_write_atomic(): the bytes land in a temporary file in the
 * same directory, are fsync'd, renamed over the target, and the directory is fsync'd. A kill at
 * any point leaves either the old file or the new one, never a mix.
 */
#ifndef CND_FILEIO_H
#define CND_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads all of `path` into a new malloc'd buffer (caller frees), NUL-terminated for
 * convenience (the NUL is not counted in *len). Refuses files larger than max_bytes with
 * CND_ERANGE. Returns 0, CND_EIO (open/read failed), CND_ERANGE or CND_ENOMEM. */
int cnd_file_read(const char *path, size_t max_bytes, uint8_t **data, size_t *len);

/* Like cnd_file_read but transparently gunzips (zlib's gzread passes plain files through).
 * Refuses what is not a regular file (CND_EIO); a corrupt stream is CND_EFORMAT with zlib's
 * message. */
int cnd_file_read_gz(const char *path, size_t max_bytes, uint8_t **data, size_t *len);

/* Writes `len` bytes to `path` atomically with permissions `mode` (e.g. 0644, 0600).
 * Returns 0 or CND_EIO with a detail naming the path and the failing step. */
int cnd_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* fsync(2) of the directory holding `path` (after a rename into it). 0 or CND_EIO. */
int cnd_file_fsync_dir(const char *path);

/* Advisory lock on a lock file `path` (created 0600 if missing) with flock(2): shared
 * (exclusive = 0) or exclusive, never waiting. On success *fd holds the lock until
 * cnd_file_unlock. CND_ESTATE when another process holds a conflicting lock, CND_EIO otherwise.
 * Only for lock files: flock on a database file would be wrong (db.h explains its locks). */
int cnd_file_lock(const char *path, int exclusive, int *fd);
void cnd_file_unlock(int *fd);

/* Creates a directory (and its parents) with `mode`; succeeds if it exists. */
int cnd_mkdir_p(const char *path, mode_t mode);

/* 1 if path exists, else 0. */
int cnd_file_exists(const char *path);

/* Directories that appear whole or not at all (the `init` commands): build everything in a
 * staging directory next to the target, then publish it.
 *
 * cnd_dir_stage creates "<dir>.init-XXXXXX" (mode 0700; parents of dir are created) and writes
 * its path into tmp. cnd_dir_publish moves it into place: when dir does not exist or is empty,
 * with one rename(2); otherwise entry by entry, refusing (CND_EEXIST, changing nothing) when dir
 * already holds an entry of the same name whose bytes differ, and moving `last` (the file whose
 * presence says the directory is complete, e.g. the database) after every other one. Both
 * directories are fsync'd. cnd_dir_remove deletes a staging directory and everything in it
 * (NULL or a missing path is fine). A failed or killed init leaves at most a staging directory,
 * which the next init of the same dir removes (cnd_dir_stage deletes stale "<dir>.init-*" whose
 * creating process is gone). */
int cnd_dir_stage(char *tmp, size_t cap, const char *dir);
int cnd_dir_publish(const char *tmp, const char *dir, const char *last);
void cnd_dir_remove(const char *path);

#endif
