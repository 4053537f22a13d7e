/*
 * Runs one case of the kernel's memory-controller selftests, named on the command line, in
 * the kernel matrix's guests (`cargo xtask vm-test`, xtask/src/vm/selftests.rs).
 *
 * The kernel's own binary runs every case in one go, and several create a cgroup of the same
 * name under the root, so kills could not be told apart by case. Its cases and case table are
 * static, so this file includes test_memcontrol.c from the Debian linux-source package the
 * xtask downloads (nothing of it is in this repository) and replaces only its main, which
 * would run them all.
 *
 * Exit status: the case's own KSFT_PASS (0), KSFT_FAIL (1) or KSFT_SKIP (4); 2 for a usage
 * error, 3 for a guest that cannot run any case.
 */
#define _GNU_SOURCE
#define main memcontrol_selftest_main
#include "test_memcontrol.c"
#undef main

int main(int argc, char **argv)
{
	char root[PATH_MAX];
	int recursiveprot, localevents;
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	/* What the kernel's main sets up before its first case, so a case sees the same. */
	if (cg_find_unified_root(root, sizeof(root), NULL)) {
		fprintf(stderr, "no cgroup v2 hierarchy is mounted\n");
		return 3;
	}
	if (cg_read_strstr(root, "cgroup.controllers", "memory")) {
		fprintf(stderr, "%s offers no memory controller\n", root);
		return 3;
	}
	if (cg_read_strstr(root, "cgroup.subtree_control", "memory") &&
	    cg_write(root, "cgroup.subtree_control", "+memory")) {
		fprintf(stderr, "cannot enable the memory controller in %s\n", root);
		return 3;
	}
	recursiveprot = proc_mount_contains("memory_recursiveprot");
	localevents = proc_mount_contains("memory_localevents");
	if (recursiveprot < 0 || localevents < 0) {
		fprintf(stderr, "cannot read the cgroup2 mount options\n");
		return 3;
	}
	has_recursiveprot = recursiveprot;
	has_localevents = localevents;

	for (i = 0; i < ARRAY_SIZE(tests); i++) {
		if (strcmp(tests[i].name, argv[1]) == 0)
			return tests[i].fn(root);
	}
	fprintf(stderr, "test_memcontrol.c has no case %s\n", argv[1]);
	return 2;
}
