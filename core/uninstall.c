// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "uninstall.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

/* Our pins: the maps of bpf/balancing.h ("map_…") and the links of the
 * loader ("link_<hook>", and "link_<hook>_new" or "map_…_new" left by an
 * agent that died between pinning and renaming). */
static int is_link(const char *name)
{
	return strncmp(name, "link_", 5) == 0;
}

static int is_map(const char *name)
{
	return strncmp(name, "map_", 4) == 0;
}

/* Detach first: an agent still running holds the link by its fd, and
 * unpinning alone would leave its program attached. A link whose cgroup is
 * gone is defunct already (the detach fails; nothing is left to undo). */
static int remove_link(const char *path, struct errmsg *e)
{
	int fd = bpf_obj_get(path);

	if (fd >= 0) {
		bpf_link_detach(fd);
		close(fd);
	}
	if (unlink(path) && errno != ENOENT)
		return errmsg_set(e, -errno, "unpin link %s", path);
	return 0;
}

static int remove_map(const char *path, struct errmsg *e)
{
	if (unlink(path) && errno != ENOENT)
		return errmsg_set(e, -errno, "unpin map %s", path);
	return 0;
}

int uninstall_pins(const char *bpffs, struct uninstall_result *r, struct errmsg *e)
{
	char path[PATH_MAX];
	struct dirent *entry;
	int err = 0;
	DIR *dir;

	memset(r, 0, sizeof(*r));
	dir = opendir(bpffs);
	if (!dir) {
		if (errno == ENOENT) {
			r->absent = 1;
			return 0;
		}
		return errmsg_set(e, -errno, "pin directory %s", bpffs);
	}
	/* links first: the programs stop before their maps go */
	for (int pass = 0; pass < 2; pass++) {
		rewinddir(dir);
		while ((entry = readdir(dir))) {
			const char *name = entry->d_name;
			int step;

			if (pass == 0 ? !is_link(name) : !is_map(name))
				continue;
			if (snprintf(path, sizeof(path), "%s/%s", bpffs, name) >=
			    (int)sizeof(path)) {
				err = errmsg_set(e, -ENAMETOOLONG, "pin %s/%s", bpffs, name);
				continue;
			}
			step = pass == 0 ? remove_link(path, e) : remove_map(path, e);
			if (!step)
				*(pass == 0 ? &r->links : &r->maps) += 1;
			if (step && !err)
				err = step;
		}
	}
	rewinddir(dir);
	while ((entry = readdir(dir)))
		if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, ".."))
			r->foreign++;
	closedir(dir);
	if (err)
		return err;
	if (r->foreign)
		return errmsg_plain(
		    e, -ENOTEMPTY,
		    "pin directory %s: %d entries that are not balancing's were left, "
		    "and the directory with them",
		    bpffs, r->foreign);
	if (rmdir(bpffs) && errno != ENOENT)
		return errmsg_set(e, -errno, "remove pin directory %s", bpffs);
	return 0;
}
