/* instance_lock: one holder per store_path, named in the refusal; a child that inherits
 * the descriptor holds it too; a holder's death frees it whatever the file says. Each
 * test in a fresh directory under /tmp. (Two opens of the file conflict even within one
 * process: flock belongs to the open file description.) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "instance_lock.h"
#include "suites.h"

struct fx {
    char dir[64];
    char store[128];
    char lock[160];
};

static void
fx_setup(struct fx *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-lock-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->store, sizeof f->store, "%s/sessions.db", f->dir);
    ck_assert_int_eq(instance_lock_path(f->store, f->lock, sizeof f->lock), 0);
}

static void
fx_teardown(struct fx *f)
{
    unlink(f->lock);
    rmdir(f->dir);
}

static long
pid_in(const char *path)
{
    FILE *fp = fopen(path, "r");
    long pid = 0;
    ck_assert_ptr_nonnull(fp);
    if (fscanf(fp, "%ld", &pid) != 1) pid = 0;
    fclose(fp);
    return pid;
}

static void
write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A child that takes the lock (or, with fd >= 0, just keeps the inherited one), says so
 * on a pipe, and holds it until killed or for hold_ms. */
static pid_t
holder(const struct fx *f, int fd, int hold_ms)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[256];
        if (fd < 0 && instance_lock_take(f->store, 0, err, sizeof err) < 0) _exit(1);
        (void)write(p[1], "x", 1);
        usleep(hold_ms > 0 ? (useconds_t)hold_ms * 1000 : 60u * 1000 * 1000);
        _exit(0);
    }
    char c;
    close(p[1]);
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    close(p[0]);
    return pid;
}

static void
reap(pid_t pid)
{
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}

START_TEST(one_holder_named_in_the_refusal)
{
    struct fx f;
    char err[512];
    fx_setup(&f);
    int fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take: %s", err);
    ck_assert_int_eq(pid_in(f.lock), (long)getpid());
    ck_assert_int_eq(instance_lock_take(f.store, 100, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want,
             "store_path %s is in use by pid %ld (another sessiond instance); give each "
             "instance its own store_path",
             f.store, (long)getpid());
    ck_assert_str_eq(err, want);
    ck_assert(instance_lock_is(fd, f.store));
    close(fd);
    fx_teardown(&f);
}
END_TEST

START_TEST(a_stale_file_blocks_nobody)
{
    struct fx f;
    char err[512];
    fx_setup(&f);
    write_text(f.lock, "1\n"); /* a pid that lives, but holds no lock */
    int fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take: %s", err);
    ck_assert_int_eq(pid_in(f.lock), (long)getpid());
    close(fd);
    /* Killed with the lock: the kernel lets go, the file still names the dead one. */
    pid_t child = holder(&f, -1, 0);
    ck_assert_int_eq(pid_in(f.lock), (long)child);
    ck_assert_int_eq(instance_lock_take(f.store, 0, err, sizeof err), -1);
    reap(child);
    ck_assert_int_eq(pid_in(f.lock), (long)child);
    fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take after the holder died: %s", err);
    close(fd);
    fx_teardown(&f);
}
END_TEST

START_TEST(children_inherit_it)
{
    struct fx f;
    char err[512];
    fx_setup(&f);
    int fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take: %s", err);
    pid_t worker = holder(&f, fd, 0);
    close(fd); /* the master is gone; its worker still holds the store */
    ck_assert_int_eq(instance_lock_take(f.store, 0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "in use by pid") != NULL, "%s", err); /* we are still alive */
    /* A holder whose named pid is gone: the message says its workers hold it. */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
    char text[32];
    snprintf(text, sizeof text, "%ld\n", (long)dead);
    write_text(f.lock, text);
    ck_assert_int_eq(instance_lock_take(f.store, 0, err, sizeof err), -1);
    char want[64];
    snprintf(want, sizeof want, "by the workers of pid %ld, which has exited", (long)dead);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    reap(worker);
    fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take after the worker died: %s", err);
    close(fd);
    fx_teardown(&f);
}
END_TEST

START_TEST(waits_for_a_holder_letting_go)
{
    struct fx f;
    char err[512];
    fx_setup(&f);
    pid_t child = holder(&f, -1, 200);
    ck_assert_int_eq(instance_lock_take(f.store, 0, err, sizeof err), -1);
    int fd = instance_lock_take(f.store, 5000, err, sizeof err);
    ck_assert_msg(fd >= 0, "take with a wait: %s", err);
    ck_assert_int_eq(pid_in(f.lock), (long)getpid());
    ck_assert_int_eq(waitpid(child, NULL, 0), child);
    close(fd);
    fx_teardown(&f);
}
END_TEST

START_TEST(the_same_file_however_spelt)
{
    struct fx f;
    char err[512], other[160], dotted[160];
    fx_setup(&f);
    int fd = instance_lock_take(f.store, 0, err, sizeof err);
    ck_assert_msg(fd >= 0, "take: %s", err);
    snprintf(dotted, sizeof dotted, "%s/./sessions.db", f.dir);
    snprintf(other, sizeof other, "%s/other.db", f.dir);
    ck_assert(instance_lock_is(fd, dotted));
    ck_assert(!instance_lock_is(fd, other)); /* no such lock file */
    ck_assert(!instance_lock_is(-1, f.store));
    close(fd);
    fx_teardown(&f);
}
END_TEST

START_TEST(errors_say_the_path)
{
    char err[8192], longpath[5000];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    ck_assert_int_eq(instance_lock_take(longpath, 0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "too long") != NULL, "%s", err);
    ck_assert_int_eq(instance_lock_take("/nonexistent-dir/s.db", 0, err, sizeof err), -1);
    ck_assert_str_eq(err, "store_path /nonexistent-dir/s.db: cannot open "
                          "/nonexistent-dir/s.db-instance.lock: No such file or directory");
}
END_TEST

Suite *
instance_lock_suite(void)
{
    Suite *s = suite_create("instance_lock");
    TCase *tc = tcase_create("instance_lock");
    tcase_add_test(tc, one_holder_named_in_the_refusal);
    tcase_add_test(tc, a_stale_file_blocks_nobody);
    tcase_add_test(tc, children_inherit_it);
    tcase_add_test(tc, waits_for_a_holder_letting_go);
    tcase_add_test(tc, the_same_file_however_spelt);
    tcase_add_test(tc, errors_say_the_path);
    suite_add_tcase(s, tc);
    return s;
}
