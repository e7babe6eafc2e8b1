// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bpffs.h"

int cgroup2_mount_point(char *buf, size_t len, struct errmsg *e)
{
	struct mntent *ent;
	FILE *mounts;
	int err = -ENOENT;

	mounts = setmntent("/proc/mounts", "re");
	if (!mounts)
		return errmsg_set(e, -errno, "read /proc/mounts");
	while ((ent = getmntent(mounts))) {
		if (strcmp(ent->mnt_type, "cgroup2") != 0)
			continue;
		if (strlen(ent->mnt_dir) >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		strcpy(buf, ent->mnt_dir);
		err = 0;
		break;
	}
	endmntent(mounts);
	if (err)
		return errmsg_set(e, err, "cgroup2 mount in /proc/mounts");
	return 0;
}

static bool is_cgroup2_path(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

/* The file systems an operator may find mounted where cgroup2 was meant to
 * go, by name; others by their magic number. */
static const char *fs_name(long type, char *buf, size_t size)
{
	switch (type) {
	case TMPFS_MAGIC:
		return "tmpfs";
	case CGROUP_SUPER_MAGIC:
		return "cgroup v1";
	case BPF_FS_MAGIC:
		return "bpffs";
	case SYSFS_MAGIC:
		return "sysfs";
	case PROC_SUPER_MAGIC:
		return "proc";
	case OVERLAYFS_SUPER_MAGIC:
		return "overlay";
	case EXT4_SUPER_MAGIC:
		return "ext4";
	default:
		snprintf(buf, size, "type 0x%lx", (unsigned long)type);
		return buf;
	}
}

/* A missing path inside a cgroup2 hierarchy is a cgroup that does not exist:
 * mkdir -p there would create cgroups nobody runs in, and attach to them. */
static int refuse_missing_cgroup(const char *path, struct errmsg *e)
{
	char buf[PATH_MAX];
	struct stat st;
	char *slash;

	if (strlen(path) >= sizeof(buf))
		return errmsg_set(e, -ENAMETOOLONG, "cgroup %s", path);
	strcpy(buf, path);
	do {
		slash = strrchr(buf, '/');
		if (!slash)
			return 0;
		slash[slash == buf ? 1 : 0] = '\0';
	} while (stat(buf, &st) && errno == ENOENT && slash != buf);
	if (is_cgroup2_path(buf))
		return errmsg_plain(e, -ENOENT,
				    "cgroup %s: no such cgroup under the cgroup2 mount at %s", path,
				    buf);
	return 0;
}

/* 1 when path is the root of a mount (STATX_ATTR_MOUNT_ROOT is in every
 * kernel new enough for bpf_set_retval), 0 when not, -errno. */
static int is_mount_root(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx))
		return -errno;
	if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
		return -EOPNOTSUPP;
	return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

/* 1 when the directory holds nothing but . and .., 0 when it holds more. */
static int is_empty_dir(const char *path)
{
	struct dirent *ent;
	int empty = 1;
	DIR *d;

	d = opendir(path);
	if (!d)
		return -errno;
	while ((ent = readdir(d))) {
		if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

/* With the lock on path held: cgroup2 is there now (another agent won), or
 * path is an empty directory of its parent's file system and gets it. */
static int mount_cgroup2_locked(const char *path, bool *mounted, struct errmsg *e)
{
	char name[32];
	struct statfs st;
	int ret;

	if (statfs(path, &st))
		return errmsg_set(e, -errno, "cgroup %s", path);
	if (st.f_type == CGROUP2_SUPER_MAGIC)
		return 0;
	ret = is_mount_root(path);
	if (ret < 0)
		return errmsg_set(e, ret, "cgroup %s: is it a mount point", path);
	if (ret)
		return errmsg_plain(e, -EBUSY,
				    "cgroup %s: %s is mounted there, not cgroup2 (unmount it or "
				    "give another --cgroup)",
				    path, fs_name((long)st.f_type, name, sizeof(name)));
	ret = is_empty_dir(path);
	if (ret < 0)
		return errmsg_set(e, ret, "cgroup %s", path);
	if (!ret)
		return errmsg_plain(
		    e, -ENOTEMPTY,
		    "cgroup %s: not a cgroup v2 directory, and not empty: cgroup2 is "
		    "mounted only on an empty directory",
		    path);
	if (mount("none", path, "cgroup2", 0, NULL))
		return errmsg_set(e, -errno, "mount cgroup2 at %s", path);
	if (!is_cgroup2_path(path)) {
		umount2(path, MNT_DETACH);
		return errmsg_plain(e, -EIO, "mount cgroup2 at %s: not cgroup2 afterwards", path);
	}
	*mounted = true;
	return 0;
}

/* Checked again under an flock on the directory: two agents starting
 * together would otherwise stack two cgroup2 mounts (as bpffs_mount). */
int cgroup2_ensure_mounted(const char *path, bool *mounted, struct errmsg *e)
{
	struct stat st;
	int fd, err;

	*mounted = false;
	if (path[0] != '/')
		return errmsg_plain(e, -EINVAL, "cgroup %s: not an absolute path", path);
	if (stat(path, &st)) {
		if (errno != ENOENT)
			return errmsg_set(e, -errno, "cgroup %s", path);
		err = refuse_missing_cgroup(path, e);
		if (err)
			return err;
		err = bpffs_mkdir_p(path, 0755);
		if (err)
			return errmsg_set(e, err, "create cgroup2 mount point %s", path);
	} else if (!S_ISDIR(st.st_mode)) {
		return errmsg_plain(e, -ENOTDIR, "cgroup %s: not a directory", path);
	}
	if (is_cgroup2_path(path))
		return 0;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errmsg_set(e, -errno, "cgroup %s", path);
	if (flock(fd, LOCK_EX))
		err = errmsg_set(e, -errno, "lock %s", path);
	else
		err = mount_cgroup2_locked(path, mounted, e);
	close(fd); /* also drops the lock */
	return err;
}

int cgroup_open(const char *path, struct errmsg *e)
{
	struct statfs st;
	int fd, err;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errmsg_set(e, -errno, "cgroup %s", path);
	if (fstatfs(fd, &st)) {
		err = errmsg_set(e, -errno, "cgroup %s", path);
		goto fail;
	}
	if (st.f_type != CGROUP2_SUPER_MAGIC) {
		err = errmsg_plain(e, -EINVAL, "cgroup %s: not a cgroup v2 directory", path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

int cgroup_id_of(const char *path, __u64 *id, struct errmsg *e)
{
	struct {
		struct file_handle fh;
		__u64 id;
	} handle = {.fh.handle_bytes = sizeof(__u64)};
	int mount_id;

	/* On cgroup2 the file handle of a directory is its cgroup ID. */
	if (name_to_handle_at(AT_FDCWD, path, &handle.fh, &mount_id, 0))
		return errmsg_set(e, -errno, "cgroup id of %s", path);
	memcpy(id, handle.fh.f_handle, sizeof(*id));
	return 0;
}
