/* peak_rss.c - runs a command and prints its peak resident set in bytes
 * (wait4's ru_maxrss), for tests/py/test_plan.py.
 *
 *   peak_rss CMD [ARGS...]     → stdout: {"peak_rss": BYTES, "status": N}
 *                                (the command's own stdout goes to stderr)
 *
 * Why a tool: on Linux exec folds the high-water mark of the process image
 * it replaces into ru_maxrss, so a command forked straight from the test's
 * Python (≈ 80 MiB with numpy loaded) would report at least that. Forked
 * from this small program, the fold is this program's own ~1 MiB. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: peak_rss CMD [ARGS...]\n");
        return 2;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak_rss: fork");
        return 1;
    }
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO); /* keep our stdout for the result */
        execvp(argv[1], argv + 1);
        perror("peak_rss: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("peak_rss: wait4");
        return 1;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("{\"peak_rss\": %ld, \"status\": %d}\n", ru.ru_maxrss * 1024L, code);
    return 0;
}
