/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The XML reader of S3's answers on good and hostile inputs (xml.c). */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "test_util.h"

static ssize_t get(const char *doc, const char *name, char *out, size_t cap) {
  return s3__xml_get(doc, doc + strlen(doc), name, out, cap);
}

static void test_find_and_text(void) {
  char out[64];
  CU_ASSERT_EQUAL(get("<a><Key>x/y</Key></a>", "Key", out, sizeof out), 3);
  CU_ASSERT_STRING_EQUAL(out, "x/y");
  /* a longer name that starts the same is another element */
  CU_ASSERT_EQUAL(get("<a><Keys>no</Keys><Key>yes</Key></a>", "Key", out, sizeof out), 3);
  CU_ASSERT_STRING_EQUAL(out, "yes");
  /* attributes, a self-closing element, spaces in the end tag */
  CU_ASSERT_EQUAL(get("<a><Key id=\"1\">v</Key ></a>", "Key", out, sizeof out), 1);
  CU_ASSERT_EQUAL(get("<a><Prefix/></a>", "Prefix", out, sizeof out), 0);
  CU_ASSERT_STRING_EQUAL(out, "");
  /* entities: named, decimal (SeaweedFS quotes ETags as &#34;), hex, UTF-8 */
  CU_ASSERT(get("<E>&#34;abc&#34; &lt;&amp;&gt; &apos;&quot; &#x41;&#233;</E>", "E", out,
                sizeof out) > 0);
  CU_ASSERT_STRING_EQUAL(out, "\"abc\" <&> '\" A\xc3\xa9");
  /* hostile or broken */
  CU_ASSERT_EQUAL(get("<E>&bogus;</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>&#0;</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>&#xD800;</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>&#x110000;</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>&#99999999999999999999;</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>&amp</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>a<b/>c</E>", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>unterminated", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("", "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(get("<E>0123456789</E>", "E", out, 5), -1); /* too long for out */
  /* bounded by the length given, not by a NUL */
  const char *doc = "<E>abc</E><F>x</F>";
  CU_ASSERT_EQUAL(s3__xml_get(doc, doc + 9, "E", out, sizeof out), -1);
  CU_ASSERT_EQUAL(s3__xml_get(doc, doc + 10, "E", out, sizeof out), 3);
}

static void test_numbers(void) {
  uint64_t v;
  const char *s = "18446744073709551615";
  CU_ASSERT_EQUAL(s3__parse_u64(s, s + strlen(s), &v), 0);
  CU_ASSERT_EQUAL(v, UINT64_MAX);
  s = "18446744073709551616";
  CU_ASSERT_EQUAL(s3__parse_u64(s, s + strlen(s), &v), -1);
  s = " 42 ";
  CU_ASSERT_EQUAL(s3__parse_u64(s, s + strlen(s), &v), 0);
  CU_ASSERT_EQUAL(v, 42);
  s = "-1";
  CU_ASSERT_EQUAL(s3__parse_u64(s, s + strlen(s), &v), -1);
  s = "";
  CU_ASSERT_EQUAL(s3__parse_u64(s, s, &v), -1);
}

static void test_error_document(void) {
  char code[64], msg[128];
  const char *doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>"
      "<Message>At least one of the pre-conditions you specified did not hold</Message>"
      "<Key>a/x</Key></Error>";
  CU_ASSERT_EQUAL(s3__xml_error(doc, strlen(doc), code, sizeof code, msg, sizeof msg), 0);
  CU_ASSERT_STRING_EQUAL(code, "PreconditionFailed");
  CU_ASSERT_STRING_EQUAL(msg,
                         "At least one of the pre-conditions you specified did not hold");
  /* a result document is not an error, even with a Code inside */
  doc = "<CompleteMultipartUploadResult><Code>x</Code></CompleteMultipartUploadResult>";
  CU_ASSERT_EQUAL(s3__xml_error(doc, strlen(doc), code, sizeof code, msg, sizeof msg),
                  -1);
  doc = "not xml at all";
  CU_ASSERT_EQUAL(s3__xml_error(doc, strlen(doc), code, sizeof code, msg, sizeof msg),
                  -1);
  doc = "<Error><Code>SlowDown</Code></Error>";
  CU_ASSERT_EQUAL(s3__xml_error(doc, strlen(doc), code, sizeof code, msg, sizeof msg), 0);
  CU_ASSERT_STRING_EQUAL(code, "SlowDown");
  CU_ASSERT_STRING_EQUAL(msg, "");
}

static void test_list_document(void) {
  struct snap_s3_list l;
  const char *why = NULL;
  const char *doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Name>b</Name><Prefix>p/</Prefix><MaxKeys>2</MaxKeys><IsTruncated>true</"
      "IsTruncated>"
      "<Contents><Key>p/a&amp;b</Key><ETag>&#34;d4af&#34;</ETag><Size>8</Size>"
      "<LastModified>2026-12-01T09:35:15.000Z</LastModified>"
      "<StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>p/sub/c</Key><ETag>&quot;e5-2&quot;</ETag><Size>12582912</Size>"
      "<Owner><ID>x</ID></Owner></Contents>"
      "<Contents><Key>p/x//..</Key><Size>1</Size></Contents>"
      "<NextContinuationToken>tok+/=</NextContinuationToken><KeyCount>2</KeyCount>"
      "</ListBucketResult>";
  CU_ASSERT_EQUAL_FATAL(s3__xml_list(doc, strlen(doc), "p/", &l, &why), 0);
  CU_ASSERT_EQUAL_FATAL(l.count, 3);
  CU_ASSERT_STRING_EQUAL(l.entries[0].key, "a&b");
  CU_ASSERT_EQUAL(l.entries[0].last_modified, 1796117715); /* date -ud ... +%s */
  CU_ASSERT_EQUAL(l.entries[1].last_modified, 0);          /* none sent */
  CU_ASSERT(!l.entries[0].odd && !l.entries[1].odd);
  CU_ASSERT_STRING_EQUAL(l.entries[2].key, "x//..");
  CU_ASSERT(l.entries[2].odd); /* kept, but flagged: never a file name */
  CU_ASSERT_STRING_EQUAL(l.entries[0].etag, "\"d4af\"");
  CU_ASSERT_EQUAL(l.entries[0].size, 8);
  CU_ASSERT_STRING_EQUAL(l.entries[1].key, "sub/c");
  CU_ASSERT_EQUAL(l.entries[1].size, 12582912);
  CU_ASSERT_STRING_EQUAL(l.next_token, "tok+/=");
  snap_s3_list_free(&l);
  CU_ASSERT_EQUAL(l.count, 0);
  CU_ASSERT_PTR_NULL(l.entries);

  doc = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
  CU_ASSERT_EQUAL(s3__xml_list(doc, strlen(doc), "", &l, &why), 0);
  CU_ASSERT_EQUAL(l.count, 0);
  CU_ASSERT_PTR_NULL(l.next_token);
  snap_s3_list_free(&l);

  static const char *const bad[] = {
      /* truncated without a token would loop forever */
      "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
      "<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
      /* a key outside the prefix asked for */
      "<ListBucketResult><Contents><Key>q/x</Key><Size>1</Size></Contents>"
      "</ListBucketResult>",
      "<ListBucketResult><Contents><Key>p/x</Key></Contents></ListBucketResult>",
      "<ListBucketResult><Contents><Key>p/x</Key><Size>-1</Size></Contents>"
      "</ListBucketResult>",
      "<ListBucketResult><Contents><Key>p/&zz;</Key><Size>1</Size></Contents>"
      "</ListBucketResult>",
      "<ListBucketResult><Contents><Key>p/x</Key><Size>1</Size>"
      "<LastModified>yesterday</LastModified></Contents></ListBucketResult>",
      "<Error><Code>AccessDenied</Code></Error>",
      "<ListBucketResult><Contents><Key>p/x</Key><Size>1</Size>", NULL};
  for (int i = 0; bad[i]; i++) {
    why = NULL;
    CU_ASSERT_EQUAL(s3__xml_list(bad[i], strlen(bad[i]), "p/", &l, &why), SNAP_S3_EPROTO);
    CU_ASSERT_PTR_NOT_NULL(why);
    CU_ASSERT_EQUAL(l.count, 0); /* freed on failure */
  }
}

int main(void) {
  static const tu_test tests[] = {{"find_and_text", test_find_and_text},
                                  {"numbers", test_numbers},
                                  {"error_document", test_error_document},
                                  {"list_document", test_list_document},
                                  {NULL, NULL}};
  return tu_run("s3_xml", tests);
}
