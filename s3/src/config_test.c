/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snap_s3's configuration without a server: s3:// URLs, the environment, the
 * shared credentials file and its profiles, request URLs (path-style and
 * virtual-hosted), key rules, and that no message carries a secret. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test_util.h"

static const char *const aws_vars[] = {"AWS_ACCESS_KEY_ID",
                                       "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",
                                       "AWS_PROFILE",
                                       "AWS_SHARED_CREDENTIALS_FILE",
                                       "AWS_REGION",
                                       "AWS_DEFAULT_REGION",
                                       "AWS_ENDPOINT_URL",
                                       "AWS_ENDPOINT_URL_S3",
                                       "AWS_S3_ADDRESSING_STYLE",
                                       "AWS_CA_BUNDLE",
                                       NULL};

/* Each test starts from an environment with no AWS variable and a HOME without
 * credentials (the fixture's temporary directory). */
static char home[64];

static void clean_env(void) {
  for (int i = 0; aws_vars[i]; i++) unsetenv(aws_vars[i]);
  setenv("HOME", home, 1);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CU_ASSERT_FATAL(f != NULL);
  fputs(text, f);
  fclose(f);
}

static void test_url_parsing(void) {
  struct snap_s3_config c;
  struct snap_s3_error e;
  static const struct {
    const char *url, *bucket, *prefix;
  } good[] = {{"s3://bucket/prefix", "bucket", "prefix/"},
              {"s3://bucket/prefix/", "bucket", "prefix/"},
              {"s3://bucket", "bucket", ""},
              {"s3://bucket/", "bucket", ""},
              {"s3://my.bucket-1/a/b c/", "my.bucket-1", "a/b c/"}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snap_s3_config_init(&c);
    CU_ASSERT_EQUAL(snap_s3_config_set_url(&c, good[i].url, &e), 0);
    CU_ASSERT_STRING_EQUAL(c.bucket, good[i].bucket);
    CU_ASSERT_STRING_EQUAL(c.prefix, good[i].prefix);
  }
  static const char *const bad[] = {"http://bucket/p",
                                    "s3://",
                                    "s3://Bucket/p",
                                    "s3://ab/p",
                                    "s3://-bucket",
                                    "s3://bucket/a//b",
                                    "s3://bucket//a",
                                    "s3://bucket/a/../b",
                                    "s3://bucket/./a",
                                    "s3://bucket/a\tb",
                                    NULL};
  for (int i = 0; bad[i]; i++) {
    snap_s3_config_init(&c);
    CU_ASSERT_EQUAL(snap_s3_config_set_url(&c, bad[i], &e), SNAP_S3_EINVAL);
    CU_ASSERT_EQUAL(e.code, SNAP_S3_EINVAL);
    CU_ASSERT(strlen(e.message) > 0);
  }
  snap_s3_config_init(&c);
  CU_ASSERT_EQUAL(snap_s3_config_set_url(&c, NULL, NULL), SNAP_S3_EINVAL);
}

static void test_env_credentials(void) {
  clean_env();
  struct snap_s3_config c;
  struct snap_s3_error e;
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envSecret/abc+123", 1);
  setenv("AWS_SESSION_TOKEN", "envTokenXYZ", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt/p", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.access_key, "AKIDENV");
  CU_ASSERT_STRING_EQUAL(c.secret_key, "envSecret/abc+123");
  CU_ASSERT_STRING_EQUAL(c.session_token, "envTokenXYZ");
  CU_ASSERT_STRING_EQUAL(c.credentials_from, "environment");
  CU_ASSERT_STRING_EQUAL(c.region, "us-east-1");
  CU_ASSERT_STRING_EQUAL(c.endpoint, "");
  CU_ASSERT_EQUAL(c.addressing, SNAP_S3_ADDRESSING_AUTO);
  CU_ASSERT_EQUAL(c.tls_insecure, 0); /* certificates are verified by default */
  CU_ASSERT_EQUAL(c.max_attempts, 5);
  snap_s3_config_clear(&c);
  CU_ASSERT_EQUAL(c.secret_key[0], 0);
  CU_ASSERT_EQUAL(c.session_token[0], 0);

  /* half a key pair is an error naming the missing half, never the secret */
  unsetenv("AWS_ACCESS_KEY_ID");
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt/p", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "AWS_ACCESS_KEY_ID"));
  CU_ASSERT_PTR_NULL(strstr(e.message, "envSecret"));
  CU_ASSERT_EQUAL(c.secret_key[0], 0); /* a failed call leaves no secret behind */
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  unsetenv("AWS_SECRET_ACCESS_KEY");
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt/p", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "AWS_SECRET_ACCESS_KEY"));

  /* nothing at all: the message says where it looked */
  clean_env();
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt/p", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, ".aws/credentials"));
  /* an empty variable counts as unset, as in the AWS tools */
  setenv("AWS_ACCESS_KEY_ID", "", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt/p", &e), SNAP_S3_ECONFIG);
  /* a bad URL is reported before credentials are looked for */
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3:/bkt", &e), SNAP_S3_EINVAL);
}

static void test_credentials_file(void) {
  clean_env();
  char path[128];
  snprintf(path, sizeof path, "%s/creds", home);
  write_file(path,
             "# a comment\n"
             "[default]\n"
             "aws_access_key_id = AKIDDEFAULT\n"
             "aws_secret_access_key=defaultSecret\n"
             "\n"
             "; another comment\n"
             "[ci]\r\n"
             "  aws_access_key_id =  AKIDCI  \r\n"
             "aws_secret_access_key = ciSecret\r\n"
             "aws_session_token = ciToken\r\n"
             "region = eu-west-1\r\n"
             "[broken]\n"
             "aws_access_key_id = AKIDBROKEN\n");
  struct snap_s3_config c;
  struct snap_s3_error e;
  setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.access_key, "AKIDDEFAULT");
  CU_ASSERT_STRING_EQUAL(c.secret_key, "defaultSecret");
  CU_ASSERT_STRING_EQUAL(c.session_token, "");
  CU_ASSERT_PTR_NOT_NULL(strstr(c.credentials_from, "[default]"));

  setenv("AWS_PROFILE", "ci", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.access_key, "AKIDCI");
  CU_ASSERT_STRING_EQUAL(c.secret_key, "ciSecret");
  CU_ASSERT_STRING_EQUAL(c.session_token, "ciToken");
  CU_ASSERT_STRING_EQUAL(c.region, "us-east-1"); /* region is not read from here */
  CU_ASSERT_PTR_NOT_NULL(strstr(c.credentials_from, "[ci]"));

  setenv("AWS_PROFILE", "nosuch", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "[nosuch]"));
  setenv("AWS_PROFILE", "broken", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "aws_secret_access_key"));

  /* the environment's keys win over the file */
  setenv("AWS_PROFILE", "ci", 1);
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.access_key, "AKIDENV");
  CU_ASSERT_STRING_EQUAL(c.session_token, "");

  /* a file named explicitly must exist */
  clean_env();
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "/nonexistent/creds"));

  /* the default file: $HOME/.aws/credentials */
  clean_env();
  char dir[128], dflt[160];
  snprintf(dir, sizeof dir, "%s/.aws", home);
  CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
  snprintf(dflt, sizeof dflt, "%s/credentials", dir);
  write_file(dflt, "[default]\naws_access_key_id=AKIDHOME\naws_secret_access_key=h\n");
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.access_key, "AKIDHOME");
  unlink(dflt);
  rmdir(dir);
  unlink(path);
  snap_s3_config_clear(&c);
}

static void test_region_endpoint_style(void) {
  clean_env();
  struct snap_s3_config c;
  struct snap_s3_error e;
  setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
  setenv("AWS_DEFAULT_REGION", "eu-central-1", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.region, "eu-central-1");
  setenv("AWS_REGION", "eu-west-3", 1); /* AWS_REGION first */
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.region, "eu-west-3");
  setenv("AWS_REGION", "EU WEST", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "AWS_REGION"));
  unsetenv("AWS_REGION");

  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.endpoint, "http://127.0.0.1:9000");
  setenv("AWS_ENDPOINT_URL_S3", "https://minio.example:9443", 1); /* S3's own first */
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_STRING_EQUAL(c.endpoint, "https://minio.example:9443");
  static const char *const bad[] = {"ftp://h",          "http://", "http://h/path",
                                    "http://user:pw@h", "h:9000",  NULL};
  for (int i = 0; bad[i]; i++) {
    setenv("AWS_ENDPOINT_URL_S3", bad[i], 1);
    CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_EINVAL);
  }
  unsetenv("AWS_ENDPOINT_URL_S3");
  unsetenv("AWS_ENDPOINT_URL");

  setenv("AWS_S3_ADDRESSING_STYLE", "path", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_EQUAL(c.addressing, SNAP_S3_ADDRESSING_PATH);
  setenv("AWS_S3_ADDRESSING_STYLE", "virtual", 1);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_from_env(&c, "s3://bkt", &e), 0);
  CU_ASSERT_EQUAL(c.addressing, SNAP_S3_ADDRESSING_VIRTUAL);
  setenv("AWS_S3_ADDRESSING_STYLE", "sideways", 1);
  CU_ASSERT_EQUAL(snap_s3_config_from_env(&c, "s3://bkt", &e), SNAP_S3_EINVAL);
  snap_s3_config_clear(&c);
}

/* A configuration for URL building: bucket, prefix, region, endpoint, style. */
static void url_of(const char *url, const char *region, const char *endpoint,
                   int addressing, const char *key, const char *want) {
  struct snap_s3_config c;
  struct snap_s3_error e;
  char buf[512];
  snap_s3_config_init(&c);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_set_url(&c, url, &e), 0);
  strcpy(c.region, region);
  strcpy(c.endpoint, endpoint);
  c.addressing = addressing;
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_url(&c, key, buf, sizeof buf, &e), 0);
  CU_ASSERT_STRING_EQUAL(buf, want);
  if (strcmp(buf, want) != 0) fprintf(stderr, "\n  got  %s\n  want %s\n", buf, want);
}

static void test_url_building(void) {
  const int A = SNAP_S3_ADDRESSING_AUTO, P = SNAP_S3_ADDRESSING_PATH,
            V = SNAP_S3_ADDRESSING_VIRTUAL;
  /* AWS: virtual-hosted unless told otherwise or the bucket has dots */
  url_of("s3://bkt/p", "eu-west-1", "", A, "k",
         "https://bkt.s3.eu-west-1.amazonaws.com/p/k");
  url_of("s3://bkt", "us-east-1", "", A, "a/b",
         "https://bkt.s3.us-east-1.amazonaws.com/a/b");
  url_of("s3://my.bkt/p", "us-east-1", "", A, "k",
         "https://s3.us-east-1.amazonaws.com/my.bkt/p/k");
  url_of("s3://bkt/p", "us-east-1", "", P, "k",
         "https://s3.us-east-1.amazonaws.com/bkt/p/k");
  /* a custom endpoint: path-style unless forced */
  url_of("s3://bkt/p/q", "us-east-1", "http://127.0.0.1:8333", A, "k",
         "http://127.0.0.1:8333/bkt/p/q/k");
  url_of("s3://bkt/p", "us-east-1", "http://localhost:9000/", V, "k",
         "http://bkt.localhost:9000/p/k");
  /* the bucket itself */
  url_of("s3://bkt/p", "us-east-1", "http://127.0.0.1:8333", A, NULL,
         "http://127.0.0.1:8333/bkt/");
  /* keys are percent-encoded as SigV4 signs them: unreserved and '/' kept */
  url_of("s3://bkt/p", "us-east-1", "http://h:1", A, "a b/c+d~e_f.g-h=i&j%k",
         "http://h:1/bkt/p/a%20b/c%2Bd~e_f.g-h%3Di%26j%25k");
  url_of("s3://bkt", "us-east-1", "http://h:1", A, "\xc3\xa9t\xc3\xa9",
         "http://h:1/bkt/%C3%A9t%C3%A9");

  struct snap_s3_config c;
  struct snap_s3_error e;
  char buf[64];
  snap_s3_config_init(&c);
  CU_ASSERT_EQUAL_FATAL(snap_s3_config_set_url(&c, "s3://bkt/p", &e), 0);
  static const char *const bad[] = {"/a", "a//b", "a/./b", "a/../b",
                                    "a/", "..",   "a\nb",  NULL};
  for (int i = 0; bad[i]; i++) {
    CU_ASSERT_EQUAL(snap_s3_config_url(&c, bad[i], buf, sizeof buf, &e), SNAP_S3_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "bad key"));
  }
  char longkey[1100];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = 0;
  CU_ASSERT_EQUAL(snap_s3_config_url(&c, longkey, buf, sizeof buf, &e), SNAP_S3_EINVAL);
  /* a buffer too small is reported, not overrun */
  CU_ASSERT_EQUAL(snap_s3_config_url(&c, "a-rather-long-key-name-here", buf, 20, &e),
                  SNAP_S3_ETOOBIG);
}

static void test_client_create(void) {
  struct snap_s3_config c;
  struct snap_s3_error e;
  snap_s3 *s3 = (snap_s3 *)&c; /* must come back NULL on failure */
  snap_s3_config_init(&c);
  CU_ASSERT_EQUAL(snap_s3_config_set_url(&c, "s3://bkt/p", &e), 0);
  CU_ASSERT_EQUAL(snap_s3_create(&c, &s3, &e), SNAP_S3_ECONFIG);
  CU_ASSERT_PTR_NULL(s3);
  strcpy(c.access_key, "AKID");
  strcpy(c.secret_key, "sekrit");
  c.max_attempts = 0;
  CU_ASSERT_EQUAL(snap_s3_create(&c, &s3, &e), SNAP_S3_EINVAL);
  c.max_attempts = 3;
  CU_ASSERT_EQUAL_FATAL(snap_s3_create(&c, &s3, &e), 0);
  snap_s3_config_clear(&c); /* the client has its own copy */
  snap_s3_destroy(s3);
  snap_s3_destroy(NULL);
}

static void test_messages_never_hold_secrets(void) {
  struct snap_s3_config c;
  struct snap_s3_error e;
  snap_s3_config_init(&c);
  strcpy(c.secret_key, "wJalrXUtnFEMI/K7MDENG");
  strcpy(c.session_token, "FwoGZXIvYXdzEJr");
  s3__err(&e, SNAP_S3_EDENIED, "server said: %s and %s and %s again", c.secret_key,
          c.session_token, c.secret_key);
  s3__err_mask(&e, &c);
  CU_ASSERT_PTR_NULL(strstr(e.message, "wJalrXUtnFEMI"));
  CU_ASSERT_PTR_NULL(strstr(e.message, "FwoGZXIvYXdzEJr"));
  CU_ASSERT_STRING_EQUAL(e.message, "server said: *** and *** and *** again");
  /* one line: control characters from a server become spaces */
  s3__err(&e, SNAP_S3_EHTTP, "a\nb\tc\rd");
  CU_ASSERT_STRING_EQUAL(e.message, "a b c d");
  CU_ASSERT_STRING_EQUAL(snap_s3_strerror(SNAP_S3_EPRECONDITION),
                         "precondition failed (412): object exists or changed");
  CU_ASSERT_STRING_EQUAL(snap_s3_strerror(0), "success");
  CU_ASSERT_STRING_EQUAL(snap_s3_strerror(-ENOENT), "No such file or directory");
}

int main(void) {
  snprintf(home, sizeof home, "/tmp/snap-s3-config-XXXXXX");
  if (!mkdtemp(home)) return 2;
  static const tu_test tests[] = {
      {"url_parsing", test_url_parsing},
      {"env_credentials", test_env_credentials},
      {"credentials_file", test_credentials_file},
      {"region_endpoint_style", test_region_endpoint_style},
      {"url_building", test_url_building},
      {"client_create", test_client_create},
      {"messages_never_hold_secrets", test_messages_never_hold_secrets},
      {NULL, NULL}};
  int rc = tu_run("s3_config", tests);
  rmdir(home);
  return rc;
}
