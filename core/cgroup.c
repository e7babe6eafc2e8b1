// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

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
