/*
 * keyring.c
 *		The keyring: numbered 32-byte keys read from the file named by
 *		toygun.keyring_file, kept in guarded memory and read again after a
 *		configuration reload. No key ever leaves this file except to libsodium.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#include "toygun.h"

PG_FUNCTION_INFO_V1(toygun_keyring);

/* The setting, and whether the keys must be read (again) before use. */
char	   *toygun_keyring_file = NULL;
static bool keyring_stale = true;

/* A keyring file is a few lines; anything much larger is not one. */
#define KEYRING_MAX_BYTES (64 * 1024)

/*
 * The loaded keys, ascending by number. The key bytes live in one block
 * from sodium_malloc (guard pages, not swapped where possible, wiped when
 * freed), read-only once filled.
 */
static int	nkeys = 0;
static uint32 *key_numbers = NULL;
static unsigned char *key_bytes = NULL;

/*
 * Assign hook of toygun.keyring_file. It runs for every reload of the
 * configuration file that sets it, changed or not, so that a key added to
 * the same file is seen after pg_reload_conf().
 */
void
toygun_keyring_assign(const char *newval, void *extra)
{
	keyring_stale = true;
}

static void
forget_keys(void)
{
	if (key_bytes != NULL)
	{
		sodium_mprotect_readwrite(key_bytes);
		sodium_free(key_bytes);
	}
	if (key_numbers != NULL)
		free(key_numbers);
	key_bytes = NULL;
	key_numbers = NULL;
	nkeys = 0;
}

/*
 * Any role can make toygun read the keyring (encrypt(), a field, a start),
 * and so see its errors; only superusers, who set toygun.keyring_file, see
 * where the file is. The role that counts is the session's current one,
 * not the extension's owner that an API call runs as.
 */
static bool
may_see_path(void)
{
	return superuser_arg(GetOuterUserId());
}

/* The keyring file as messages name it: with its path for superusers. */
static const char *
shown_name(const char *path)
{
	if (may_see_path())
		return psprintf("keyring file \"%s\"", path);
	return "the keyring file";
}

/* A hint for superusers, who can fix the file; others are sent to them. */
static const char *
keyring_hint(const char *hint)
{
	if (!may_see_path())
		return "Ask an administrator to look at the file named by toygun.keyring_file.";
	return hint;
}

#define KEYRING_HINT(h) \
	(keyring_hint(h) != NULL ? errhint("%s", keyring_hint(h)) : 0)

static void keyring_error(const char *path, int line) pg_attribute_noreturn();

static void
keyring_error(const char *shown, int line)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("invalid line %d in %s", line, shown),
			 errdetail("Each line must be a key number from 0 to 2147483647 and a base64-encoded 32-byte key, separated by white space; lines starting with # are comments."),
			 KEYRING_HINT("Generate a key with: openssl rand -base64 32")));
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/*
 * Parse the file's text (len bytes at buf) into up to maxkeys entries:
 * numbers[i] and the 32 bytes at keys + 32 * i. Returns how many. Errors
 * name the line, never its contents.
 */
static int
parse_keyring(const char *shown, const char *buf, size_t len, int maxkeys,
			  uint32 *numbers, unsigned char *keys)
{
	size_t		pos = 0;
	int			line = 0;
	int			n = 0;

	while (pos < len)
	{
		size_t		end = pos;
		uint64		number = 0;
		size_t		tok;
		size_t		keylen = 0;
		int			i;

		while (end < len && buf[end] != '\n')
			end++;
		line++;

		while (pos < end && is_blank(buf[pos]))
			pos++;
		if (pos == end || buf[pos] == '#')
		{
			pos = end + 1;
			continue;
		}

		/* the key number */
		tok = pos;
		while (pos < end && buf[pos] >= '0' && buf[pos] <= '9')
		{
			number = number * 10 + (buf[pos] - '0');
			if (number > PG_INT32_MAX)
				keyring_error(shown, line);
			pos++;
		}
		if (pos == tok || pos == end || !is_blank(buf[pos]))
			keyring_error(shown, line);
		while (pos < end && is_blank(buf[pos]))
			pos++;

		/* the key */
		tok = pos;
		while (pos < end && !is_blank(buf[pos]) && buf[pos] != '#')
			pos++;
		if (n >= maxkeys ||
			sodium_base642bin(keys + TOYGUN_KEY_BYTES * n, TOYGUN_KEY_BYTES,
							  buf + tok, pos - tok, NULL, &keylen, NULL,
							  sodium_base64_VARIANT_ORIGINAL) != 0 ||
			keylen != TOYGUN_KEY_BYTES)
			keyring_error(shown, line);

		/* then nothing but a comment */
		while (pos < end && is_blank(buf[pos]))
			pos++;
		if (pos < end && buf[pos] != '#')
			keyring_error(shown, line);

		for (i = 0; i < n; i++)
			if (numbers[i] == (uint32) number)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIG_FILE_ERROR),
						 errmsg("key %u is listed twice in %s",
								(uint32) number, shown),
						 KEYRING_HINT(NULL),
						 errdetail("The second time is on line %d.", line)));
		numbers[n++] = (uint32) number;
		pos = end + 1;
	}
	return n;
}

/*
 * The file must be a regular file that only the server's OS user can read:
 * owned by it with no group or other access, or owned by root and at most
 * group-readable (as PostgreSQL asks of ssl_key_file).
 */
static void
check_keyring_file(const char *shown, struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s is not a regular file", shown),
				 KEYRING_HINT("Set toygun.keyring_file to the key file and reload the configuration.")));
	if (st->st_uid != geteuid() && st->st_uid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s must be owned by the database user or root", shown),
				 KEYRING_HINT("Change its owner to the operating system user the server runs as.")));
	if ((st->st_uid == geteuid() && (st->st_mode & (S_IRWXG | S_IRWXO))) ||
		(st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s has group or world access", shown),
				 errdetail("It must have permissions u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root."),
				 KEYRING_HINT("Make it readable only by the server's operating system user, for example with chmod 600.")));
	if (st->st_size > KEYRING_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s is too large", shown),
				 KEYRING_HINT(NULL),
				 errdetail("It is %lld bytes long; the limit is %d bytes.",
						   (long long) st->st_size, KEYRING_MAX_BYTES)));
}

/* What a load has allocated so far: freed (and wiped) whether it succeeds or not. */
typedef struct KeyringScratch
{
	char	   *text;			/* the file's contents */
	unsigned char *keys;		/* parsed keys, in file order */
	uint32	   *numbers;
	int			n;
} KeyringScratch;

static void
free_scratch(KeyringScratch *scratch)
{
	if (scratch->text != NULL)
		sodium_free(scratch->text);
	if (scratch->keys != NULL)
		sodium_free(scratch->keys);
	if (scratch->numbers != NULL)
		free(scratch->numbers);
}

/* Read the open keyring file and parse it into scratch. */
static void
read_keyring(const char *shown, int fd, struct stat *st, KeyringScratch *scratch)
{
	size_t		len = 0;
	int			maxkeys = 1;
	size_t		i;

	scratch->text = sodium_malloc(st->st_size + 1);
	if (scratch->text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory reading the keyring file")));
	for (;;)
	{
		ssize_t		got = read(fd, scratch->text + len, st->st_size + 1 - len);

		if (got < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not read %s: %m", shown),
					 KEYRING_HINT(NULL)));
		if (got == 0)
			break;
		len += got;
		if (len > (size_t) st->st_size)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("%s changed while it was read", shown),
					 KEYRING_HINT("Reload the configuration again.")));
	}
	for (i = 0; i < len; i++)
		if (scratch->text[i] == '\n')
			maxkeys++;
	scratch->keys = sodium_malloc((size_t) maxkeys * TOYGUN_KEY_BYTES);
	scratch->numbers = malloc(sizeof(uint32) * maxkeys);
	if (scratch->keys == NULL || scratch->numbers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory reading the keyring file")));
	scratch->n = parse_keyring(shown, scratch->text, len, maxkeys, scratch->numbers, scratch->keys);
	if (scratch->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s has no keys", shown),
				 KEYRING_HINT("Add a line with a key number and a key; generate a key with: openssl rand -base64 32")));
}

/* Read the keyring file into the loaded keys, replacing them. */
static void
load_keyring(void)
{
	const char *path = toygun_keyring_file;
	const char *shown;
	int			fd;
	struct stat st;
	KeyringScratch scratch = {NULL, NULL, NULL, 0};
	int			i;

	/* a keyring that cannot be read again has no keys: fail closed */
	forget_keys();

	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no keyring is configured"),
				 errdetail("Secrets and encrypted fields need the keys of the keyring file named by toygun.keyring_file."),
				 KEYRING_HINT("Set toygun.keyring_file to a key file readable only by the server's operating system user, and reload the configuration.")));

	shown = shown_name(path);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not open %s: %m", shown),
				 KEYRING_HINT("Set toygun.keyring_file to a key file readable by the server's operating system user, and reload the configuration.")));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not stat %s: %m", shown),
				 KEYRING_HINT(NULL)));
	check_keyring_file(shown, &st);

	PG_TRY();
	{
		read_keyring(shown, fd, &st, &scratch);
	}
	PG_CATCH();
	{
		free_scratch(&scratch);
		PG_RE_THROW();
	}
	PG_END_TRY();
	CloseTransientFile(fd);

	/* Sort by number (a handful of keys: insertion sort), keys alongside. */
	key_bytes = sodium_malloc((size_t) scratch.n * TOYGUN_KEY_BYTES);
	key_numbers = malloc(sizeof(uint32) * scratch.n);
	if (key_bytes == NULL || key_numbers == NULL)
	{
		free_scratch(&scratch);
		forget_keys();
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory reading the keyring file")));
	}
	for (i = 0; i < scratch.n; i++)
	{
		int			j = i;

		while (j > 0 && key_numbers[j - 1] > scratch.numbers[i])
		{
			key_numbers[j] = key_numbers[j - 1];
			memcpy(key_bytes + TOYGUN_KEY_BYTES * j, key_bytes + TOYGUN_KEY_BYTES * (j - 1),
				   TOYGUN_KEY_BYTES);
			j--;
		}
		key_numbers[j] = scratch.numbers[i];
		memcpy(key_bytes + TOYGUN_KEY_BYTES * j, scratch.keys + TOYGUN_KEY_BYTES * i,
			   TOYGUN_KEY_BYTES);
	}
	nkeys = scratch.n;
	free_scratch(&scratch);
	sodium_mprotect_readonly(key_bytes);
	keyring_stale = false;
}

static void
ensure_keyring(void)
{
	if (keyring_stale || nkeys == 0)
		load_keyring();
}

/* The key that encrypts: the highest-numbered one. */
const unsigned char *
toygun_keyring_current(uint32 *number)
{
	ensure_keyring();
	*number = key_numbers[nkeys - 1];
	return key_bytes + TOYGUN_KEY_BYTES * (nkeys - 1);
}

/* The key of a number, or NULL if the keyring does not hold it. */
const unsigned char *
toygun_keyring_key(uint32 number)
{
	int			i;

	ensure_keyring();
	for (i = 0; i < nkeys; i++)
		if (key_numbers[i] == number)
			return key_bytes + TOYGUN_KEY_BYTES * i;
	return NULL;
}

/*
 * keyring(): the numbers of the loaded keys and which one encrypts, so an
 * administrator can see that a reload took effect. Never the keys.
 */
Datum
toygun_keyring(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	ensure_keyring();
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < nkeys; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int32GetDatum((int32) key_numbers[i]);
		values[1] = BoolGetDatum(i == nkeys - 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
