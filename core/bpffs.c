// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "bpffs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static const char default_bpffs[] = "/sys/fs/bpf";

int bpffs_is_bpffs(const char *path)
{
	struct statfs st;

	if (statfs(path, &st))
		return -errno;
	return st.f_type == BPF_FS_MAGIC;
}

int bpffs_mkdir_p(const char *path, unsigned int mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Check and mount under an flock on the mount point: two agents or specs
 * starting together would otherwise stack two bpffs instances, and pins made
 * in the lower one would vanish from view. The check is repeated on the path
 * (not the locked fd) once the lock is held, so the loser sees the winner's
 * mount. */
int bpffs_mount(const char *path, struct errmsg *e)
{
	int fd = -1, err;

	err = bpffs_is_bpffs(path);
	if (err == 1)
		return 0;
	err = bpffs_mkdir_p(path, 0755);
	if (err)
		return errmsg_set(e, err, "create bpffs mount point %s", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errmsg_set(e, -errno, "open %s", path);
	if (flock(fd, LOCK_EX)) {
		err = errmsg_set(e, -errno, "lock %s", path);
		goto out;
	}
	err = bpffs_is_bpffs(path);
	if (err == 1) {
		err = 0;
		goto out;
	}
	if (mount("bpf", path, "bpf", 0, "mode=0700")) {
		err = errmsg_set(e, -errno, "mount bpffs at %s", path);
		goto out;
	}
	err = 0;
out:
	close(fd); /* also drops the lock */
	return err;
}

static int is_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The deepest existing ancestor of path (path itself included). */
static int existing_ancestor(const char *path, char *buf, size_t len)
{
	struct stat st;
	char *slash;

	if (strlen(path) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, path);
	while (stat(buf, &st)) {
		if (errno != ENOENT)
			return -errno;
		slash = strrchr(buf, '/');
		if (!slash)
			return -ENOENT;
		if (slash == buf)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	return 0;
}

int bpffs_prepare_dir(const char *pin_dir, struct errmsg *e)
{
	char ancestor[PATH_MAX];
	int err;

	if (pin_dir[0] != '/')
		return errmsg_plain(e, -EINVAL, "pin directory %s: not an absolute path", pin_dir);
	if (is_under(pin_dir, default_bpffs)) {
		err = bpffs_mount(default_bpffs, e);
		if (err)
			return err;
	} else {
		err = existing_ancestor(pin_dir, ancestor, sizeof(ancestor));
		if (err)
			return errmsg_set(e, err, "pin directory %s", pin_dir);
		if (bpffs_is_bpffs(ancestor) != 1) {
			err = bpffs_mount(pin_dir, e);
			if (err)
				return err;
		}
	}
	err = bpffs_mkdir_p(pin_dir, 0755);
	if (err)
		return errmsg_set(e, err, "create pin directory %s", pin_dir);
	return 0;
}
