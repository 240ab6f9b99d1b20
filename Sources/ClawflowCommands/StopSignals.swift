import Glibc

/// SIGINT and SIGTERM, which end the long-running commands (`watch`, `events --follow`).
enum StopSignals {
    /// Unblocks SIGINT and SIGTERM on the calling thread. A program inherits its signal mask
    /// from the thread that started it: a parent that starts clawflow from a thread blocking
    /// them (a thread-pool worker, say) would otherwise leave it deaf to both.
    static func unblock() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
