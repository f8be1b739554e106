// SPDX-License-Identifier: MIT
/*
 * aem-http: a small HTTP/1.1 server on the ring's socket source.  The
 * kernel side (the module's aem_sock, or the embedded backend's socket
 * thread) accepts, receives and sends; this loop parses the bytes of each
 * data event as they come and queues the answers as SENDs from send slots.
 * No accept, read or write here.
 *
 *   aem-http [PORT]        serve on 127.0.0.1:PORT (0 or none: any port, printed)
 *   aem-http --self-test   serve, drive itself from a child with plain sockets
 *                          (keep-alive, a pipelined burst, bodies by length
 *                          and chunked, requests split across writes,
 *                          malformed requests), check every byte, exit 0/1
 *                          (77: no socket source here)
 *
 * What it serves: GET and HEAD of / get a fixed text; GET and HEAD of any
 * other path 404; POST of any path answers how many body bytes it read
 * (Content-Length or chunked; trailers are read and ignored; a client
 * that sends Expect: 100-continue gets its 100 first); any other method
 * 501.  Connections are kept alive and requests answered in order,
 * however they are pipelined or split, until the client asks for close
 * (Connection: close, or HTTP/1.0 without keep-alive).  A malformed request
 * is answered 400 with Connection: close.  A connection the server ends
 * is half-closed (its FIN after the last answer), read to its end and then
 * closed, so that unread request bytes never turn the close into a reset
 * that could destroy the answer before the client read it.
 *
 * Bounds: a request's line and headers at most HDR_MAX bytes, a chunk-size
 * or trailer line at most CHUNK_LINE_MAX (more: 400); bodies of any length
 * (counted, not kept).  A connection whose answers its peer
 * does not read, until the source refuses to queue more (64 sends), is
 * aborted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libaem.h"

#define LISTEN_TAG	1
/*
 * user_data of our SENDs, SHUTDOWNs and aborts: a kind in the top bits, the
 * connection id below (an id's top byte is AEM_ID_KIND_SUB, 1: bits 61..63 are free).
 */
#define TAG_SEND	(1ULL << 63)
#define TAG_SHUT	(1ULL << 62)
#define TAG_ABORT	(1ULL << 61)
#define TAG_ID_MASK	(TAG_ABORT - 1)

#define HDR_MAX		8192
#define CHUNK_LINE_MAX	128	/* a chunk-size line */
#define CONN_TABLE	4096	/* open addressing; > sock_conns, a power of two */
#define SOCK_CONNS	1024
#define SEND_SLOTS	32
#define SLOT_SIZE	4096

#define BODY_TEXT	"Hello from AEM\n"

enum state {
	ST_HEAD,		/* collecting the request line and headers */
	ST_BODY,		/* Content-Length body: left bytes to go */
	ST_CHUNK_SIZE,		/* a chunk-size line */
	ST_CHUNK_DATA,		/* left bytes of a chunk */
	ST_CHUNK_CRLF,		/* the CRLF after a chunk's data */
	ST_TRAILER,		/* trailer lines, up to an empty one */
	ST_DRAIN,		/* answered and half-closed: read and drop until the peer's end */
};

enum method { M_GET, M_HEAD, M_POST, M_OTHER };

struct conn {
	uint64_t	id;
	enum state	st;
	enum method	method;
	int		root;		/* the target is "/" */
	int		close_after;	/* close once this request is answered */
	int		expect_continue;	/* the client waits for 100 Continue before its body */
	uint64_t	left;		/* bytes of body or chunk still to read */
	uint64_t	body;		/* body bytes of this request */
	unsigned	hlen;		/* bytes in hdr */
	unsigned	llen;		/* bytes in line */
	int		crlf;		/* ST_CHUNK_CRLF: bytes of it seen */
	char		line[CHUNK_LINE_MAX];
	char		hdr[HDR_MAX];
};

/* The server: its ring, its connections by id, the send slots of this batch. */
struct server {
	struct aem_ring	*r;
	struct conn	*tab[CONN_TABLE];
	unsigned	live;
	unsigned	next_slot;	/* send slots [0, next_slot) are in queued SQEs */
	uint64_t	requests;
	/* The current connection's answer bytes, in send slot out_slot. */
	char		*out;
	unsigned	out_len, out_slot;
};

/* ---------------------------------------------------------------------- */
/* Connections by id: open addressing, linear probing, backward-shift delete */

static unsigned conn_hash(uint64_t id)
{
	return (unsigned)((id * 0x9e3779b97f4a7c15ULL) >> 40) & (CONN_TABLE - 1);
}

static struct conn *conn_find(struct server *s, uint64_t id)
{
	for (unsigned i = conn_hash(id);; i = (i + 1) & (CONN_TABLE - 1)) {
		if (!s->tab[i])
			return NULL;
		if (s->tab[i]->id == id)
			return s->tab[i];
	}
}

static struct conn *conn_add(struct server *s, uint64_t id)
{
	struct conn *c;
	unsigned i;

	if (s->live >= CONN_TABLE / 2 || !(c = malloc(sizeof(*c))))
		return NULL;
	memset(c, 0, offsetof(struct conn, line));
	c->id = id;
	for (i = conn_hash(id); s->tab[i]; i = (i + 1) & (CONN_TABLE - 1))
		;
	s->tab[i] = c;
	s->live++;
	return c;
}

static void conn_del(struct server *s, uint64_t id)
{
	unsigned i = conn_hash(id), j, h;

	while (s->tab[i] && s->tab[i]->id != id)
		i = (i + 1) & (CONN_TABLE - 1);
	if (!s->tab[i])
		return;
	free(s->tab[i]);
	s->tab[i] = NULL;
	s->live--;
	/* Move back entries whose probe run crossed the hole. */
	for (j = (i + 1) & (CONN_TABLE - 1); s->tab[j]; j = (j + 1) & (CONN_TABLE - 1)) {
		h = conn_hash(s->tab[j]->id);
		if (((j - h) & (CONN_TABLE - 1)) >= ((j - i) & (CONN_TABLE - 1))) {
			s->tab[i] = s->tab[j];
			s->tab[j] = NULL;
			i = j;
		}
	}
}

/* ---------------------------------------------------------------------- */
/* Submission: answers go out from send slots, copied at submission       */

static struct aem_sqe *sqe_get(struct server *s)
{
	struct aem_sqe *sqe;

	while (!(sqe = aem_get_sqe(s->r)))
		aem_submit(s->r);	/* the SQ ring is full: hand it over first */
	return sqe;
}

/* Queue the answer bytes gathered for @c as one SEND. */
static void out_flush(struct server *s, struct conn *c)
{
	struct aem_sqe *sqe;

	if (!s->out)
		return;
	if (s->out_len) {
		sqe = sqe_get(s);
		aem_prep_sock_send_slot(sqe, c->id, s->out_slot, s->out_len);
		sqe->user_data = TAG_SEND | c->id;
		sqe->flags |= AEM_SQE_F_SILENT;	/* failures and refusals are still answered */
	}
	s->out = NULL;
	s->out_len = 0;
}

/* Append @len bytes to @c's answers, taking send slots as they fill. */
static void out_put(struct server *s, struct conn *c, const void *p, size_t len)
{
	const char *b = p;
	size_t n;

	while (len) {
		if (!s->out || s->out_len == s->r->slot_size) {
			out_flush(s, c);
			if (s->next_slot == s->r->send_slots) {
				/* Every send slot is named by a queued SEND: the submit copies them all out. */
				aem_submit(s->r);
				s->next_slot = 0;
			}
			s->out_slot = s->next_slot++;
			s->out = aem_send_slot(s->r, s->out_slot);
		}
		n = s->r->slot_size - s->out_len;
		if (n > len)
			n = len;
		memcpy(s->out + s->out_len, b, n);
		s->out_len += (unsigned)n;
		b += n;
		len -= n;
	}
}

static void shutdown_conn(struct server *s, struct conn *c, unsigned how)
{
	struct aem_sqe *sqe;

	out_flush(s, c);	/* after the answers */
	sqe = sqe_get(s);
	aem_prep_sock_shutdown(sqe, c->id, how);
	sqe->user_data = TAG_SHUT | c->id;
	sqe->flags |= AEM_SQE_F_SILENT;
}

/* Abort @c at once (its queued sends are discarded); no CLOSED event follows. */
static void abort_conn(struct server *s, uint64_t id)
{
	struct aem_sqe *sqe;

	sqe = sqe_get(s);
	aem_prep_unsubscribe(sqe, id);
	sqe->user_data = TAG_ABORT | id;
	sqe->flags |= AEM_SQE_F_SILENT;
	conn_del(s, id);
}

/* ---------------------------------------------------------------------- */
/* Answers                                                                 */

static void respond(struct server *s, struct conn *c, const char *status, const char *body,
		    size_t blen, int head_only)
{
	char h[256];
	int n;

	n = snprintf(h, sizeof(h),
		     "HTTP/1.1 %s\r\nServer: aem-http\r\nContent-Type: text/plain\r\n%sContent-Length: %zu\r\n\r\n",
		     status, c->close_after ? "Connection: close\r\n" : "", blen);
	out_put(s, c, h, (size_t)n);
	if (!head_only)
		out_put(s, c, body, blen);
	s->requests++;
}

/* A malformed request: 400, then no more requests from this connection. */
static void bad_request(struct server *s, struct conn *c)
{
	c->close_after = 1;
	respond(s, c, "400 Bad Request", "bad request\n", 12, 0);
	shutdown_conn(s, c, AEM_SOCK_SHUT_WR);
	c->st = ST_DRAIN;
}

/* The request's body is read: answer it; then the next request, or the end. */
static void request_done(struct server *s, struct conn *c)
{
	char b[64];
	int n;

	switch (c->method) {
	case M_GET:
	case M_HEAD:
		if (c->root)
			respond(s, c, "200 OK", BODY_TEXT, sizeof(BODY_TEXT) - 1, c->method == M_HEAD);
		else
			respond(s, c, "404 Not Found", "not found\n", 10, c->method == M_HEAD);
		break;
	case M_POST:
		n = snprintf(b, sizeof(b), "read %llu body bytes\n", (unsigned long long)c->body);
		respond(s, c, "200 OK", b, (size_t)n, 0);
		break;
	default:
		respond(s, c, "501 Not Implemented", "not implemented\n", 16, 0);
	}
	c->hlen = 0;
	c->body = 0;
	if (c->close_after) {
		shutdown_conn(s, c, AEM_SOCK_SHUT_WR);
		c->st = ST_DRAIN;
	} else {
		c->st = ST_HEAD;
	}
}

/* ---------------------------------------------------------------------- */
/* Parsing                                                                 */

static int is_tchar(int ch)
{
	return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Whether the comma-separated list @v (@n bytes) holds token @tok, any case. */
static int list_has(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok), i = 0, j;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		for (j = i; j < n && v[j] != ','; j++)
			;
		while (j > i && (v[j - 1] == ' ' || v[j - 1] == '\t'))
			j--;
		if (j - i == tl && !strncasecmp(v + i, tok, tl))
			return 1;
		while (i < n && v[i] != ',')
			i++;
	}
	return 0;
}

/*
 * Parse the request line and headers in c->hdr (c->hlen bytes, ending in
 * an empty line) and set the body's state.  Returns 0, or -1 for a
 * malformed request.
 */
static int parse_head(struct conn *c)
{
	char *p = c->hdr, *end = c->hdr + c->hlen, *eol, *sp, *colon, *v, *ve;
	int http10, have_len = 0, chunked = 0, have_host = 0, keep_alive = 0, close_req = 0, cont = 0;
	uint64_t len = 0;
	size_t ml;

	/* Request line: METHOD SP TARGET SP HTTP/1.x CRLF */
	eol = memmem(p, (size_t)(end - p), "\r\n", 2);
	sp = memchr(p, ' ', (size_t)(eol - p));
	if (!sp || sp == p)
		return -1;
	ml = (size_t)(sp - p);
	for (size_t i = 0; i < ml; i++)
		if (!is_tchar((unsigned char)p[i]))
			return -1;
	c->method = ml == 3 && !memcmp(p, "GET", 3) ? M_GET : ml == 4 && !memcmp(p, "HEAD", 4) ? M_HEAD :
		    ml == 4 && !memcmp(p, "POST", 4) ? M_POST : M_OTHER;
	p = sp + 1;
	sp = memchr(p, ' ', (size_t)(eol - p));
	if (!sp || sp == p)
		return -1;
	for (char *t = p; t < sp; t++)
		if ((unsigned char)*t <= ' ' || *t == 0x7f)
			return -1;
	c->root = sp - p == 1 && *p == '/';
	p = sp + 1;
	if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1'))
		return -1;
	http10 = p[7] == '0';

	/* Header fields: NAME ":" OWS VALUE OWS CRLF, up to the empty line. */
	for (p = eol + 2; p < end - 2; p = eol + 2) {
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return -1;
		for (char *t = p; t < colon; t++)
			if (!is_tchar((unsigned char)*t))
				return -1;	/* also a space before the colon, or obsolete folding */
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		for (char *t = v; t < ve; t++)
			if ((*t < ' ' && *t != '\t') || *t == 0x7f)
				return -1;
#define NAME_IS(s) ((size_t)(colon - p) == sizeof(s) - 1 && !strncasecmp(p, s, sizeof(s) - 1))
		if (NAME_IS("Content-Length")) {
			uint64_t n = 0;

			if (v == ve)
				return -1;
			for (char *t = v; t < ve; t++) {
				if (*t < '0' || *t > '9' || n > (UINT64_MAX - 9) / 10)
					return -1;
				n = n * 10 + (uint64_t)(*t - '0');
			}
			if (have_len && n != len)
				return -1;	/* two lengths that disagree */
			have_len = 1;
			len = n;
		} else if (NAME_IS("Transfer-Encoding")) {
			if (chunked || ve - v != 7 || strncasecmp(v, "chunked", 7))
				return -1;	/* only chunked, once, is understood */
			chunked = 1;
		} else if (NAME_IS("Connection")) {
			close_req |= list_has(v, (size_t)(ve - v), "close");
			keep_alive |= list_has(v, (size_t)(ve - v), "keep-alive");
		} else if (NAME_IS("Expect")) {
			cont = ve - v == 12 && !strncasecmp(v, "100-continue", 12);
		} else if (NAME_IS("Host")) {
			if (have_host++)
				return -1;
		}
#undef NAME_IS
	}
	if ((!http10 && !have_host) || (chunked && have_len) || (chunked && http10))
		return -1;
	c->close_after = close_req || (http10 && !keep_alive);
	c->expect_continue = cont && !http10 && (chunked || len);
	c->body = 0;
	if (chunked) {
		c->st = ST_CHUNK_SIZE;
		c->llen = 0;
	} else if (len) {
		c->st = ST_BODY;
		c->left = len;
	} else {
		c->st = ST_HEAD;	/* request_done() follows at once */
		c->left = 0;
	}
	return 0;
}

/* A chunk-size line in c->line: HEX [; extensions]; -1 when malformed. */
static int parse_chunk_size(struct conn *c)
{
	uint64_t n = 0;
	unsigned i;
	int digits = 0;

	for (i = 0; i < c->llen && isxdigit((unsigned char)c->line[i]); i++, digits++) {
		if (n >> 60)
			return -1;
		n = n * 16 + (uint64_t)(isdigit((unsigned char)c->line[i]) ? c->line[i] - '0' :
					  (tolower((unsigned char)c->line[i]) - 'a' + 10));
	}
	while (i < c->llen && (c->line[i] == ' ' || c->line[i] == '\t'))
		i++;
	if (!digits || (i < c->llen && c->line[i] != ';'))
		return -1;
	c->left = n;
	return 0;
}

/*
 * Collect bytes of a line into c->line, up to its CRLF (not kept).
 * Returns bytes used; *done is 1 once the line is whole, -1 when it is too
 * long or a CR is not followed by LF.
 */
static size_t line_put(struct conn *c, const char *p, size_t n, int *done)
{
	size_t i;

	*done = 0;
	for (i = 0; i < n; i++) {
		if (c->llen && c->line[c->llen - 1] == '\r') {
			if (p[i] != '\n') {
				*done = -1;
				return i;
			}
			c->llen--;
			*done = 1;
			return i + 1;
		}
		if (c->llen == sizeof(c->line)) {
			*done = -1;
			return i;
		}
		c->line[c->llen++] = p[i];
	}
	return i;
}

/* Feed @n received bytes of connection @c through its parser. */
static void feed(struct server *s, struct conn *c, const char *p, size_t n)
{
	size_t k;
	int done;

	while (n) {
		switch (c->st) {
		case ST_DRAIN:
			return;
		case ST_HEAD: {
			/* Copy up to the end of the head, or all of it. */
			const char *nl;
			size_t take;

			for (k = 0; k < n; k += take) {
				nl = memchr(p + k, '\n', n - k);
				take = nl ? (size_t)(nl - (p + k)) + 1 : n - k;
				if (c->hlen + take > sizeof(c->hdr)) {
					bad_request(s, c);
					return;
				}
				memcpy(c->hdr + c->hlen, p + k, take);
				c->hlen += (unsigned)take;
				if (!nl)
					continue;
				if (c->hlen >= 2 && c->hdr[c->hlen - 2] != '\r') {
					bad_request(s, c);	/* a bare LF */
					return;
				}
				if (c->hlen == 2) {
					c->hlen = 0;	/* an empty line before a request: allowed, skipped */
					continue;
				}
				if (c->hlen >= 4 && !memcmp(c->hdr + c->hlen - 4, "\r\n\r\n", 4)) {
					k += take;
					break;
				}
			}
			p += k;
			n -= k;
			if (c->hlen < 4 || memcmp(c->hdr + c->hlen - 4, "\r\n\r\n", 4))
				return;	/* the head goes on in a later event */
			if (parse_head(c) < 0) {
				bad_request(s, c);
				return;
			}
			if (c->expect_continue)
				out_put(s, c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			if (c->st == ST_HEAD)
				request_done(s, c);
			break;
		}
		case ST_BODY:
		case ST_CHUNK_DATA:
			k = n < c->left ? n : (size_t)c->left;
			c->left -= k;
			c->body += k;
			p += k;
			n -= k;
			if (c->left)
				return;
			if (c->st == ST_BODY) {
				request_done(s, c);
			} else {
				c->st = ST_CHUNK_CRLF;
				c->crlf = 0;
			}
			break;
		case ST_CHUNK_CRLF:
			if (*p != "\r\n"[c->crlf]) {
				bad_request(s, c);
				return;
			}
			p++;
			n--;
			if (++c->crlf == 2) {
				c->st = ST_CHUNK_SIZE;
				c->llen = 0;
			}
			break;
		case ST_CHUNK_SIZE:
		case ST_TRAILER:
			k = line_put(c, p, n, &done);
			p += k;
			n -= k;
			if (done < 0) {
				bad_request(s, c);
				return;
			}
			if (!done)
				return;
			if (c->st == ST_TRAILER) {
				if (c->llen == 0)
					request_done(s, c);	/* the empty line ends the trailers */
				c->llen = 0;
				break;
			}
			if (parse_chunk_size(c) < 0) {
				bad_request(s, c);
				return;
			}
			c->llen = 0;
			c->st = c->left ? ST_CHUNK_DATA : ST_TRAILER;
			break;
		}
	}
}

/* ---------------------------------------------------------------------- */
/* Events                                                                  */

static void handle_result(struct server *s, const struct aem_cqe *e)
{
	uint64_t id = e->user_data & TAG_ID_MASK;
	struct conn *c;

	if (e->res >= 0 || !(e->user_data & (TAG_SEND | TAG_SHUT)))
		return;	/* an abort's answer, or a late success */
	/*
	 * A refused send (the peer reads nothing and 64 sends wait) loses
	 * answers: end the connection.  A failed one (-EPIPE, -ECONNRESET...)
	 * ends it by itself with a CLOSED event.
	 */
	if (aem_sock_refused(e->res) && e->res != -ENOENT && (c = conn_find(s, id))) {
		fprintf(stderr, "aem-http: connection %llu: a send was refused (%s): aborted\n",
			(unsigned long long)id, strerror(-e->res));
		abort_conn(s, id);
	}
}

static void handle_event(struct server *s, const struct aem_cqe *e)
{
	const struct aem_sock_event *ev = aem_cqe_sock_event(e);
	struct conn *c;
	unsigned len;
	void *p;

	if (!ev) {
		p = aem_cqe_payload(s->r, e, &len);
		if ((c = conn_find(s, e->id)) && p) {
			feed(s, c, p, len);
			out_flush(s, c);
		}
		if (e->flags & AEM_CQE_F_SLOT) {
			while (aem_release_slot(s->r, e->slot) == -EAGAIN) {
				aem_release_commit(s->r);
				aem_submit(s->r);
			}
		}
		return;
	}
	switch (ev->type) {
	case AEM_SOCK_EV_CONNECT:
		if (!conn_add(s, e->id))
			abort_conn(s, e->id);
		break;
	case AEM_SOCK_EV_EOF:
		/* The peer is done: after the answers queued, close (a partial request is dropped). */
		if ((c = conn_find(s, e->id)))
			shutdown_conn(s, c, AEM_SOCK_CLOSE);
		break;
	case AEM_SOCK_EV_CLOSED:
		conn_del(s, e->id);
		break;
	case AEM_SOCK_EV_LIMIT:
		fprintf(stderr, "aem-http: accepting paused: %s\n", strerror(-ev->res));
		break;
	}
}

static volatile sig_atomic_t child_done;

static void on_child(int sig)
{
	(void)sig;
	child_done = 1;
}

/* Serve for ever, or with @self_test until the child ended and so did every connection. */
static int serve(struct server *s, int self_test)
{
	const struct aem_cqe *batch[64];
	struct aem_cqe e;
	unsigned cls, n, i;
	time_t start = time(NULL);

	for (;;) {
		while (aem_result_peek(s->r, &i)) {
			e = *aem_result_at(s->r, i);
			aem_result_advance(s->r, 1);
			handle_result(s, &e);
		}
		for (cls = 0; cls < s->r->nr_classes; cls++) {
			n = aem_peek_batch(s->r, cls, batch, 64);
			for (i = 0; i < n; i++)
				handle_event(s, batch[i]);
			aem_cq_advance(s->r, cls, n);
		}
		aem_release_commit(s->r);
		if (self_test && child_done && !s->live)
			return 0;
		if (self_test && time(NULL) - start > 60) {
			fprintf(stderr, "aem-http: self-test: still %u connections after 60 s\n", s->live);
			return 1;
		}
		if (aem_submit_and_wait(s->r, 1, self_test ? 100000000LL : 1000000000LL) == -EINTR)
			aem_submit(s->r);	/* a signal may have come before the submission */
		s->next_slot = 0;	/* the submit copied every queued send slot */
	}
}

/* ---------------------------------------------------------------------- */
/* --self-test: a client with plain sockets, in a child                   */

#define OK_HDR(len)	"HTTP/1.1 200 OK\r\nServer: aem-http\r\nContent-Type: text/plain\r\nContent-Length: " len "\r\n\r\n"
#define OK_GET		OK_HDR("15") "Hello from AEM\n"
#define OK_HEAD		OK_HDR("15")
#define OK_HDR_CLOSE	"HTTP/1.1 200 OK\r\nServer: aem-http\r\nContent-Type: text/plain\r\n" \
			"Connection: close\r\nContent-Length: 15\r\n\r\n"
#define OK_GET_CLOSE	OK_HDR_CLOSE "Hello from AEM\n"
#define NOT_FOUND	"HTTP/1.1 404 Not Found\r\nServer: aem-http\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
#define BAD		"HTTP/1.1 400 Bad Request\r\nServer: aem-http\r\nContent-Type: text/plain\r\n" \
			"Connection: close\r\nContent-Length: 12\r\n\r\nbad request\n"
#define GET_ROOT	"GET / HTTP/1.1\r\nHost: t\r\n\r\n"

static unsigned short test_port;

static int t_connect(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(test_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("aem-http: self-test: connect");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Send @rlen bytes of @req (in pieces of @piece bytes with a pause between
 * them; 0: as fast as the socket takes them) while reading the answer, until
 * @wlen bytes came; compare them with @want.  With @then_eof, the end of
 * the stream must follow.  Reads as it sends, so that neither side's
 * buffers have to hold a whole burst.
 */
static int t_exchange(int fd, const char *what, const char *req, size_t rlen, size_t piece,
		      const char *want, size_t wlen, int then_eof)
{
	char *got = malloc(wlen + 1);
	size_t sent = 0, have = 0, k;
	time_t start = time(NULL);
	struct pollfd pf = { .fd = fd };
	ssize_t n = 1;
	int ret = -1, err = 0;

	while (got && (sent < rlen || have < wlen) && time(NULL) - start < 20) {
		pf.events = (sent < rlen ? POLLOUT : 0) | (have < wlen ? POLLIN : 0);
		if (poll(&pf, 1, 1000) < 0)
			break;
		if (sent < rlen && (pf.revents & (POLLOUT | POLLERR))) {
			k = piece && rlen - sent > piece ? piece : rlen - sent;
			n = send(fd, req + sent, k, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN) {
				err = errno;
				break;
			}
			if (n > 0)
				sent += (size_t)n;
			if (piece && sent < rlen)
				usleep(3000);	/* likely another data event; correct either way */
		}
		if (have < wlen && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
			n = recv(fd, got + have, wlen - have, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				err = n ? errno : 0;
				break;
			}
			if (n > 0)
				have += (size_t)n;
		}
	}
	if (!got) {
		fprintf(stderr, "aem-http: self-test: %s: out of memory\n", what);
	} else if (sent < rlen || have < wlen) {
		fprintf(stderr, "aem-http: self-test: %s: sent %zu of %zu, got %zu of %zu bytes, then %s\n",
			what, sent, rlen, have, wlen, err ? strerror(err) : n ? "a timeout" : "end of stream");
	} else if (memcmp(got, want, wlen)) {
		size_t i = 0;

		while (got[i] == want[i])
			i++;
		fprintf(stderr, "aem-http: self-test: %s: byte %zu differs: got \"%.*s\"\n", what, i,
			(int)(wlen - i < 60 ? wlen - i : 60), got + i);
	} else if (then_eof && (n = recv(fd, got, 1, 0)) != 0) {
		fprintf(stderr, "aem-http: self-test: %s: no end of stream after the answer (%zd)\n",
			what, n);
	} else {
		ret = 0;
	}
	free(got);
	return ret;
}

/* One connection: send @req, expect @want. */
static int t_case(const char *what, const char *req, size_t rlen, size_t piece, const char *want,
		  size_t wlen, int then_eof)
{
	int fd = t_connect(), ret;

	if (fd < 0)
		return -1;
	ret = t_exchange(fd, what, req, rlen, piece, want, wlen, then_eof);
	close(fd);
	if (!ret)
		printf("aem-http: self-test: %s: ok\n", what);
	return ret;
}

#define CASE(what, req, piece, want, eof) t_case(what, req, sizeof(req) - 1, piece, want, sizeof(want) - 1, eof)

/* A growing buffer for the longer cases. */
struct sbuf {
	char	*p;
	size_t	len, cap;
};

static void sb_put(struct sbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static int t_keepalive(void)
{
	int fd = t_connect(), ret = 0, i;

	if (fd < 0)
		return -1;
	for (i = 0; i < 5 && !ret; i++) {
		const char *req = i == 2 ? "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" :
				  i == 3 ? "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n" : GET_ROOT;
		const char *want = i == 2 ? OK_HEAD : i == 3 ? NOT_FOUND : OK_GET;

		ret = t_exchange(fd, "keep-alive", req, strlen(req), 0, want, strlen(want), 0);
	}
	/* Then the client ends: the server closes after nothing more to say. */
	if (!ret && (shutdown(fd, SHUT_WR) < 0 || t_exchange(fd, "keep-alive end", "", 0, 0, "", 0, 1)))
		ret = -1;
	close(fd);
	if (!ret)
		printf("aem-http: self-test: keep-alive, 5 requests one by one: ok\n");
	return ret;
}

/* Many requests in one write; their answers must come back in order. */
static int t_pipeline(unsigned count, size_t piece)
{
	struct sbuf req = { 0 }, want = { 0 };
	char what[64], b[64];
	unsigned i;
	int ret;

	for (i = 0; i < count; i++) {
		switch (i % 4) {
		case 0:
			sb_str(&req, GET_ROOT);
			sb_str(&want, OK_GET);
			break;
		case 1:
			sb_str(&req, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
			sb_str(&want, OK_HEAD);
			break;
		case 2:
			snprintf(b, sizeof(b), "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %u\r\n\r\n", i % 64);
			sb_str(&req, b);
			for (unsigned k = 0; k < i % 64; k++)
				sb_put(&req, "x", 1);
			snprintf(b, sizeof(b), "read %u body bytes\n", i % 64);
			sb_str(&want, "HTTP/1.1 200 OK\r\nServer: aem-http\r\nContent-Type: text/plain\r\nContent-Length: ");
			snprintf(what, sizeof(what), "%zu\r\n\r\n", strlen(b));
			sb_str(&want, what);
			sb_str(&want, b);
			break;
		case 3:
			sb_str(&req, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
			sb_str(&want, NOT_FOUND);
			break;
		}
	}
	snprintf(what, sizeof(what), "pipelined burst of %u%s", count, piece ? ", in pieces" : "");
	ret = t_case(what, req.p, req.len, piece, want.p, want.len, 0);
	free(req.p);
	free(want.p);
	return ret;
}

/* A chunked body across several writes, a Content-Length body larger than a slot, then a GET. */
static int t_bodies(void)
{
	struct sbuf req = { 0 }, want = { 0 };
	static char big[3 * SLOT_SIZE + 123];
	char b[128];
	int ret;

	memset(big, 'b', sizeof(big));
	sb_str(&req, "POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n"
		     "1000\r\n");
	sb_put(&req, big, 0x1000);
	sb_str(&req, "\r\n0\r\nX-Trailer: yes\r\n\r\n");
	snprintf(b, sizeof(b), "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", sizeof(big));
	sb_str(&req, b);
	sb_put(&req, big, sizeof(big));
	sb_str(&req, GET_ROOT);
	snprintf(b, sizeof(b), "read %d body bytes\n", 5 + 26 + 0x1000);
	sb_str(&want, OK_HDR("21"));
	sb_str(&want, b);
	snprintf(b, sizeof(b), "read %zu body bytes\n", sizeof(big));
	sb_str(&want, OK_HDR("22"));
	sb_str(&want, b);
	sb_str(&want, OK_GET);
	ret = t_case("chunked and long bodies, in 97-byte pieces", req.p, req.len, 97, want.p, want.len, 0) ?:
	      t_case("chunked and long bodies, at once", req.p, req.len, 0, want.p, want.len, 0);
	free(req.p);
	free(want.p);
	return ret;
}

static int self_test(void)
{
	return t_keepalive() ?:
	       CASE("split request", GET_ROOT GET_ROOT, 3, OK_GET OK_GET, 0) ?:
	       t_pipeline(64, 0) ?:
	       t_pipeline(1000, 0) ?:
	       t_pipeline(64, 61) ?:
	       t_bodies() ?:
	       CASE("Connection: close", "GET / HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, Close\r\n\r\n" GET_ROOT, 0,
		    OK_GET_CLOSE, 1) ?:
	       CASE("HTTP/1.0", "HEAD / HTTP/1.0\r\n\r\n", 0, OK_HDR_CLOSE, 1) ?:
	       CASE("Expect: 100-continue", "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
		    "Content-Length: 4\r\n\r\nabcd", 0, "HTTP/1.1 100 Continue\r\n\r\n" OK_HDR("18")
		    "read 4 body bytes\n", 0) ?:
	       CASE("malformed request line", "GARBAGE\r\n\r\n" GET_ROOT, 0, BAD, 1) ?:
	       CASE("malformed header", GET_ROOT "GET / HTTP/1.1\r\nHost: t\r\nNo colon\r\n\r\n" GET_ROOT, 0,
		    OK_GET BAD, 1) ?:
	       CASE("missing Host", "GET / HTTP/1.1\r\n\r\n", 0, BAD, 1) ?:
	       CASE("bad chunk size", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0,
		    BAD, 1) ?:
	       CASE("length and chunked", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, BAD, 1) ?:
	       CASE("bare LF", "GET / HTTP/1.1\nHost: t\n\n", 0, BAD, 1) ?: 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int test = argc > 1 && !strcmp(argv[1], "--self-test");
	static struct server srv;
	socklen_t al = sizeof(a);
	struct aem_params p;
	struct aem_ring r;
	struct aem_cqe c;
	struct aem_sqe *sqe;
	unsigned i;
	pid_t pid;
	int lfd, ret, st;

	a.sin_port = htons(argc > 1 && !test ? (unsigned short)atoi(argv[1]) : 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1024) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
		perror("aem-http: listen");
		return 1;
	}
	memset(&p, 0, sizeof(p));
	p.slot_size = SLOT_SIZE;
	p.send_slots = SEND_SLOTS;
	p.sock_conns = SOCK_CONNS;
	ret = aem_setup(&p, &r);
	if (ret < 0) {
		fprintf(stderr, "aem-http: aem_setup: %s\n", strerror(-ret));
		return 1;
	}
	srv.r = &r;
	sqe = sqe_get(&srv);
	aem_prep_subscribe_sock(sqe, lfd, 0, LISTEN_TAG);
	aem_submit(&r);
	for (;;) {
		if (aem_result_peek(&r, &i)) {
			c = *aem_result_at(&r, i);
			aem_result_advance(&r, 1);
			break;
		}
		aem_wait(&r, 1, -1);
	}
	if (c.res < 0) {
		fprintf(stderr, "aem-http: subscribe the listener (%s backend): %s\n",
			aem_backend_name(&r), strerror(-c.res));
		return c.res == -EOPNOTSUPP && test ? 77 : 1;
	}
	if (!test) {
		printf("aem-http: %s backend, serving http://127.0.0.1:%u/\n", aem_backend_name(&r),
		       ntohs(a.sin_port));
		fflush(stdout);
		return serve(&srv, 0);
	}
	test_port = ntohs(a.sin_port);
	signal(SIGCHLD, on_child);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		ret = self_test();
		fflush(stdout);
		_exit(ret ? 1 : 0);
	}
	ret = serve(&srv, 1);
	waitpid(pid, &st, 0);
	ret = ret || !WIFEXITED(st) || WEXITSTATUS(st);
	printf("aem-http: self-test (%s backend, %llu requests answered) %s\n", aem_backend_name(&r),
	       (unsigned long long)srv.requests, ret ? "FAILED" : "passed");
	aem_teardown(&r);
	close(lfd);
	return ret;
}
