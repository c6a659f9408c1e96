/* rtpgen: the RTP load generator of `centralino bench relay` (built by bench/rtpgen.py with the
 * machine's C compiler). It plays both phones of N calls: 2N UDP sockets on 127.0.0.1, each
 * sending a 20 ms G.711 packet (12-byte RTP header + 160 bytes) every 20 ms to its side of the
 * relay, the N calls spread evenly over the 20 ms (phones are not in phase). Each packet carries
 * its send time (CLOCK_MONOTONIC, ns) and its stream; whatever arrives on a socket is timed and
 * counted, so the relay's added latency is measured per packet, not only its loss.
 *
 * Protocol on stdin/stdout (one line each):
 *   out: "ports P0 P1 ... P(2N-1)"     the sockets' ports (call i: 2i and 2i+1)
 *   in:  "go DURATION T0 T1 ... T(2N-1)"  where socket k sends (the relay's port for that side)
 *   out: one JSON object with the counts, the latency percentiles and the generator's own CPU.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define PKT 172
#define BUCKET_US 10               /* histogram resolution */
#define BUCKETS (2000000 / BUCKET_US) /* up to 2 s; later ones land in the last bucket */
#define LATE_US 50000              /* 50 ms: as good as lost for a jitter buffer */
#define BATCH 64

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t hist[BUCKETS];
static uint64_t received, late, foreign, max_us;

static void take(const unsigned char *p, ssize_t n, uint64_t t) {
    uint64_t sent;
    if (n != PKT) { foreign++; return; }
    memcpy(&sent, p + 12, 8);
    if (sent == 0 || sent > t || t - sent > 60000000000ull) { foreign++; return; }
    uint64_t us = (t - sent) / 1000;
    received++;
    if (us > LATE_US) late++;
    if (us > max_us) max_us = us;
    uint64_t b = us / BUCKET_US;
    hist[b < BUCKETS ? b : BUCKETS - 1]++;
}

static double percentile(double q) {
    uint64_t want = (uint64_t)(q * (double)received), seen = 0;
    for (int b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (seen > want) return (b + 0.5) * BUCKET_US / 1000.0;
    }
    return max_us / 1000.0;
}

static void drain(int ep, int *fds, struct mmsghdr *msgs, unsigned char (*bufs)[256], int timeout_ms) {
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    uint64_t t = now_ns();
    for (int e = 0; e < n; e++) {
        int fd = fds[evs[e].data.u32];
        for (;;) {
            int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) break;
            for (int k = 0; k < got; k++) take(bufs[k], msgs[k].msg_len, t);
            if (got < BATCH) break;
        }
    }
}

int main(void) {
    int calls;
    if (scanf("%d", &calls) != 1 || calls <= 0) { fprintf(stderr, "rtpgen: first line: N\n"); return 2; }
    int socks = 2 * calls;
    int *fds = calloc(socks, sizeof(int));
    struct sockaddr_in *dst = calloc(socks, sizeof(*dst));
    int ep = epoll_create1(0);
    printf("ports");
    for (int k = 0; k < socks; k++) {
        fds[k] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int size = 1 << 18;
        setsockopt(fds[k], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fds[k] < 0 || bind(fds[k], (struct sockaddr *)&a, sizeof a) < 0) { perror("rtpgen: socket"); return 1; }
        socklen_t len = sizeof a;
        getsockname(fds[k], (struct sockaddr *)&a, &len);
        printf(" %d", ntohs(a.sin_port));
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[k], &ev);
    }
    printf("\n");
    fflush(stdout);
    char word[8];
    double duration;
    if (scanf("%7s %lf", word, &duration) != 2 || strcmp(word, "go") != 0) { fprintf(stderr, "rtpgen: expected go\n"); return 2; }
    for (int k = 0; k < socks; k++) {
        int port;
        if (scanf("%d", &port) != 1) { fprintf(stderr, "rtpgen: missing target %d\n", k); return 2; }
        dst[k].sin_family = AF_INET;
        dst[k].sin_port = htons((uint16_t)port);
        dst[k].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }

    static unsigned char bufs[BATCH][256];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    for (int k = 0; k < BATCH; k++) {
        iov[k].iov_base = bufs[k];
        iov[k].iov_len = sizeof bufs[k];
        memset(&msgs[k], 0, sizeof msgs[k]);
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
    }
    unsigned char pkt[PKT];
    memset(pkt, 0xd5, sizeof pkt);
    pkt[0] = 0x80; pkt[1] = 8;  /* RTP v2, PCMA */

    const uint64_t period = 20000000ull, start = now_ns() + 5000000ull;
    const uint64_t end = start + (uint64_t)(duration * 1e9);
    uint64_t *due = calloc(calls, sizeof(uint64_t));
    uint16_t *seq = calloc(calls, sizeof(uint16_t));
    for (int i = 0; i < calls; i++) due[i] = start + period * (uint64_t)i / (uint64_t)calls;
    uint64_t sent = 0, send_errors = 0;
    int next = 0;  /* streams are due in index order within a period */
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) break;
        int budget = socks;  /* never more than one round per pass, so receiving keeps up */
        while (budget > 0 && due[next] <= t) {
            for (int side = 0; side < 2; side++) {
                int k = 2 * next + side;
                pkt[2] = seq[next] >> 8; pkt[3] = seq[next] & 0xff;
                uint32_t ssrc = htonl((uint32_t)k + 1);
                memcpy(pkt + 8, &ssrc, 4);
                uint64_t stamp = now_ns();
                memcpy(pkt + 12, &stamp, 8);
                if (sendto(fds[k], pkt, PKT, 0, (struct sockaddr *)&dst[k], sizeof dst[k]) == PKT) sent++;
                else send_errors++;
            }
            seq[next]++;
            due[next] += period;
            next = (next + 1) % calls;
            budget -= 2;
        }
        /* wait for arrivals until the next stream is due, at least 1 ms: streams due within that
         * millisecond go together (each packet is stamped when sent, so the timing stays exact)
         * and the generator does not spin */
        uint64_t wait_ns = due[next] > t ? due[next] - t : 0;
        drain(ep, fds, msgs, bufs, wait_ns > 0 ? (int)(wait_ns / 1000000) + 1 : 0);
    }
    uint64_t grace = now_ns() + 500000000ull;  /* what is still in flight */
    while (now_ns() < grace) drain(ep, fds, msgs, bufs, 10);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"calls\": %d, \"seconds\": %.3f, \"sent\": %llu, \"send_errors\": %llu, \"received\": %llu, "
           "\"late_50ms\": %llu, \"foreign\": %llu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, "
           "\"max_ms\": %.3f, \"generator_cpu_s\": %.3f}\n",
           calls, duration, (unsigned long long)sent, (unsigned long long)send_errors,
           (unsigned long long)received, (unsigned long long)late, (unsigned long long)foreign,
           percentile(0.5), percentile(0.99), percentile(0.999), max_us / 1000.0, cpu);
    return 0;
}
