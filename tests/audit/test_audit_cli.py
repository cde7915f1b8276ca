#!/usr/bin/env python3
"""test_audit_cli.py BIN: the auditor's tools on a coordinator made by real `condenser`
processes (ca init, keygen, ca issue, coordinator init, site enroll, site revoke), each result
checked by code that shares nothing with Condenser's: Python's hashlib, json and sqlite3.

  - Key IDs: every signed note the tools write (`audit checkpoint`, the checkpoint of an
    inclusion proof, both checkpoints of `audit prove --from-checkpoint`) carries the key ID of
    the C2SP signed-note convention, SHA-256(key name || 0x0A || 0x01 || Ed25519 key)[:4],
    computed here (and the formula itself checked against the Go sumdb/note test vector).
  - check-proof refuses hand-edited proofs, naming the field: integers written as 57.0 or 5.7e1
    or as strings or beyond int64, a signature line with a wrong key ID, a checkpoint of another
    key with the same name swapped in, the right key ID over another key's signature, and the
    wrong --key.
  - Operator commands (coordinator init, site enroll/revoke, job create/cancel) record their exact
    argv, every word, as a JSON array of strings in their admin.* entry, read back here with
    sqlite3 and json; option words before positional ones, --opt=value, quotes, $, backquotes,
    backslashes, tabs, newlines and non-ASCII included. The HTML report shows each command
    shell-quoted: bash, given that text, rebuilds the same argv.
  - The report marks what the signatures do not cover: every element drawn from an entry at or
    past the last checkpoint's size (read here from audit_checkpoint) is marked unsigned, and no
    other is; the closing section names the entries each side of it.

Run by ctest (tests/audit/CMakeLists.txt); exits 77 (skipped) when python3 is too old.
"""
import base64
import hashlib
import html
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import re
import tempfile

FAILURES = []
ADMIN = []  # (action, argv) of every operator command run on coord, in order
# A --reason that no shell-quoting or word-joining shortcut survives.
TRICKY = "it's \"odd\": $HOME `true` $(echo pwned) \\ tab\there\nnewline \u00e9 \u2211 * ~ #"


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)


def run(*args, ok=True):
    """Runs BIN with args (a list, no shell), returns (exit status, stdout + stderr)."""
    p = subprocess.run([BIN] + list(args), cwd=WORK, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if ok and p.returncode != 0:
        print(out, file=sys.stderr)
        raise SystemExit("setup command failed: %s" % " ".join(args))
    return p.returncode, out


def admin(action, *args):
    """Runs an operator command on coord and remembers the argv its admin.* entry must hold."""
    run(*args)
    ADMIN.append(("admin." + action, [BIN] + list(args)))


def key_id(name, pk):
    """The C2SP signed-note key ID of an Ed25519 key: 0x01 is the Ed25519 signature type."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + b"\x01" + pk).digest()[:4]


def note_signatures(note):
    """(origin, [(key name, key id, signature)]) of a signed note's text."""
    body, sep, sigs = note.partition("\n\n")
    check(sep == "\n\n", "note without a blank line before its signatures")
    out = []
    for line in sigs.splitlines():
        check(line.startswith("\u2014 "), "signature line without an em dash: %r" % line)
        name, _, b64 = line[2:].partition(" ")
        blob = base64.b64decode(b64, validate=True)
        check(len(blob) == 68, "signature of %d bytes, not 4 + 64" % len(blob))
        out.append((name, blob[:4], blob[4:]))
    return body.split("\n", 1)[0], out


def check_note(note, pk, what):
    origin, sigs = note_signatures(note)
    check(len(sigs) >= 1, what + ": no signature line")
    for name, kid, _ in sigs:
        check(name == origin, "%s: signature by %r, not the origin %r" % (what, name, origin))
        check(kid == key_id(origin, pk),
              "%s: key ID %s, but SHA-256(origin || 0x0A || 0x01 || key)[:4] is %s"
              % (what, kid.hex(), key_id(origin, pk).hex()))


def read_pub(path):
    """A node's identity.pub ("condenser-ed25519 HEX") as 32 bytes."""
    words = open(path).read().split()
    pk = bytes.fromhex(words[-1])
    check(len(pk) == 32, "%s is not a 32-byte key" % path)
    return pk


def setup():
    run("ca", "init", "--dir", "ca")
    for site in ("site-c", "site-d"):
        run("keygen", "--out", site)
        run("ca", "issue", "--dir", "ca", "--name", site, "--role", "site",
            "--pubkey", site + "/identity.pub", "--out", site + ".pem")
    admin("coordinator.init", "coordinator", "init", "--ca", "ca", "--dir", "coord")
    # A second coordinator with the same name (so the same origin) and its own key: the
    # "swapped key" of the tests below.
    run("coordinator", "init", "--ca", "ca", "--dir", "other")
    # Checkpoints are signed automatically every `checkpoint_every` entries, a setting no
    # command changes (default 1000); a small value lets a few commands sign some.
    set_checkpoint_every(3)


def set_checkpoint_every(n):
    db = sqlite3.connect(os.path.join(WORK, "coord", "coordinator.db"))
    with db:
        db.execute("INSERT OR REPLACE INTO audit_meta(key, value) VALUES ('checkpoint_every', ?)",
                   (str(n),))
    db.close()


def test_key_ids():
    pk, other_pk = read_pub(os.path.join(WORK, "coord", "identity.pub")), \
        read_pub(os.path.join(WORK, "other", "identity.pub"))
    # The formula against the Go sumdb/note test vector (golang.org/x/mod/sumdb/note):
    # vkey PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW.
    vec = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    check(key_id("PeterNeumann", vec[1:]).hex() == "c74f20a3", "key ID formula vs Go's vector")

    run("audit", "checkpoint", "coord/coordinator.db", "--out", "kept.cp")
    check_note(open(os.path.join(WORK, "kept.cp")).read(), pk, "audit checkpoint")
    run("audit", "checkpoint", "other/coordinator.db", "--out", "other.cp")
    check_note(open(os.path.join(WORK, "other.cp")).read(), other_pk, "other's checkpoint")
    # The log grows past two automatic checkpoints.
    admin("site.enroll", "site", "enroll", "site-c", "--cert", "site-c.pem", "--dir", "coord")
    admin("site.enroll", "site", "enroll", "--cert=site-d.pem", "--dir", "coord", "site-d")
    admin("site.revoke", "site", "revoke", "site-c", "--reason", "auditor tail test", "--dir",
          "coord")
    run("audit", "prove", "coord/coordinator.db", "--from-checkpoint", "kept.cp",
        "--out", "cons.json")
    cons = json.load(open(os.path.join(WORK, "cons.json")))
    check(cons["new_size"] > cons["old_size"], "the log did not grow past a new checkpoint")
    check_note(cons["old_checkpoint"], pk, "prove --from-checkpoint: old_checkpoint")
    check_note(cons["new_checkpoint"], pk, "prove --from-checkpoint: new_checkpoint")
    check(cons["old_checkpoint"] == open(os.path.join(WORK, "kept.cp")).read(),
          "old_checkpoint is not the kept checkpoint byte for byte")
    rc, out = run("audit", "check-proof", "cons.json", "--key", "coord/identity.pub", ok=False)
    check(rc == 0 and "extends" in out, "check-proof of the consistency proof: " + out)
    run("audit", "prove", "coord/coordinator.db", "--entry", "1", "--out", "inc.json")
    check_note(json.load(open(os.path.join(WORK, "inc.json")))["checkpoint"], pk,
               "prove --entry: checkpoint")
    # A kept checkpoint of another key is refused, not re-labelled with this log's key ID.
    rc, out = run("audit", "prove", "coord/coordinator.db", "--from-checkpoint", "other.cp",
                  "--out", "x.json", ok=False)
    check(rc == 1 and "key ID" in out, "prove from another key's checkpoint: %d %s" % (rc, out))
    check(not os.path.exists(os.path.join(WORK, "x.json")), "a refused proof was written")


def write(name, text):
    with open(os.path.join(WORK, name), "w") as f:
        f.write(text)


def refused(name, field, *words):
    """check-proof NAME must exit 1 with a message naming 'field' and each of words."""
    rc, out = run("audit", "check-proof", name, "--key", "coord/identity.pub", ok=False)
    check(rc == 1, "%s: check-proof exited %d, not 1: %s" % (name, rc, out))
    for w in ("'%s'" % field,) + words:
        check(w in out, "%s: the refusal does not say %r: %s" % (name, w, out))


def replace_once(text, old, new):
    check(text.count(old) == 1, "%r is not in the proof exactly once" % old)
    return text.replace(old, new)


def resign_line(note, key_id_bytes=None, sig_from=None):
    """The note with its signature line's key ID and/or signature replaced."""
    body, _, sigs = note.partition("\n\n")
    name, _, b64 = sigs.splitlines()[0][2:].partition(" ")
    blob = base64.b64decode(b64)
    kid, sig = blob[:4], blob[4:]
    if key_id_bytes is not None:
        kid = key_id_bytes
    if sig_from is not None:
        sig = base64.b64decode(sig_from.partition("\n\n")[2].splitlines()[0][2:].partition(" ")[2])[4:]
    return "%s\n\n\u2014 %s %s\n" % (body, name, base64.b64encode(kid + sig).decode())


def test_check_proof_edits():
    cons_text = open(os.path.join(WORK, "cons.json")).read()
    cons = json.loads(cons_text)
    n = cons["new_size"] - 1  # the last entry the latest checkpoint covers
    run("audit", "prove", "coord/coordinator.db", "--entry", str(n), "--out", "inc.json")
    inc_text = open(os.path.join(WORK, "inc.json")).read()
    inc = json.loads(inc_text)
    rc, out = run("audit", "check-proof", "inc.json", "--key", "coord/identity.pub", ok=False)
    check(rc == 0 and out.startswith("OK: entry %d " % n), "the untouched proof: " + out)
    # Integers: only as JSON integers, in range.
    index = '"index":%d' % n
    for i, bad in enumerate(["%d.0" % n, "%se1" % (n / 10), "%de0" % n, '"%d"' % n,
                             "18446744073709551616", "-1", "%d.5" % n]):
        write("int%d.json" % i, replace_once(inc_text, index, '"index":' + bad))
        refused("int%d.json" % i, "index")
    size = '"tree_size":%d' % inc["tree_size"]
    write("size.json", replace_once(inc_text, size, size + ".0"))
    refused("size.json", "tree_size")
    old = '"old_size":%d' % cons["old_size"]
    write("old.json", replace_once(cons_text, old, old + ".0"))
    refused("old.json", "old_size")
    new = '"new_size":%d' % cons["new_size"]
    write("new.json", replace_once(cons_text, new, '"new_size":%de0' % cons["new_size"]))
    refused("new.json", "new_size")
    # A wrong key ID over the right signature.
    pk = read_pub(os.path.join(WORK, "coord", "identity.pub"))
    right = key_id(inc["checkpoint"].split("\n", 1)[0], pk)
    wrong = bytes([right[0] ^ 0x01]) + right[1:]
    bad = dict(inc, checkpoint=resign_line(inc["checkpoint"], key_id_bytes=wrong))
    write("kid.json", json.dumps(bad))
    refused("kid.json", "checkpoint", "key ID", wrong.hex(), right.hex())
    # Another key's checkpoint of a log with the same name, swapped in whole: its key ID is not
    # the key's given.
    other_cp = open(os.path.join(WORK, "other.cp")).read()
    check(other_cp.split("\n", 1)[0] == cons["new_checkpoint"].split("\n", 1)[0],
          "the two coordinators' logs do not share a name")
    write("swap.json", json.dumps(dict(cons, new_checkpoint=other_cp)))
    refused("swap.json", "new_checkpoint", "key ID")
    # The right key ID over another key's signature.
    forged = resign_line(other_cp, key_id_bytes=key_id(other_cp.split("\n", 1)[0], pk))
    write("forged.json", json.dumps(dict(cons, old_checkpoint=forged)))
    refused("forged.json", "old_checkpoint", "signature does not verify")
    # The wrong key given: refused on the key ID before any signature is checked.
    rc, out = run("audit", "check-proof", "inc.json", "--key", "other/identity.pub", ok=False)
    check(rc == 1 and "'checkpoint'" in out and "key ID" in out, "--key of another node: " + out)


def admin_entries():
    """(seq, action, details) of coord's admin.* entries, read with Python's sqlite3."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(WORK, "coord", "coordinator.db"),
                         uri=True)
    rows = db.execute("SELECT seq, entry FROM audit_entry ORDER BY seq").fetchall()
    db.close()
    out = []
    for seq, text in rows:
        e = json.loads(text)
        if e["action"].startswith("admin."):
            out.append((seq, e["action"], e["details"]))
    return out


def test_admin_argv():
    admin("job.create", "job", "create", "--dir", "coord", "--name", "two  words",
          "--teacher-local", "t", "--student-arch", "dense(10)", "--input", "1,8,8",
          "--classes", "10")
    set_checkpoint_every(0)  # from here on nothing is signed: the report has an unsigned tail
    admin("job.cancel", "job", "cancel", "--reason", TRICKY, "--dir", "coord", "1")
    got = admin_entries()
    check([a for _, a, _ in got] == [a for a, _ in ADMIN],
          "admin actions %s, not %s" % ([a for _, a, _ in got], [a for a, _ in ADMIN]))
    for (seq, action, details), (_, argv) in zip(got, ADMIN):
        check(details.get("argv") == argv,
              "entry %d (%s): argv %r, not %r" % (seq, action, details.get("argv"), argv))
        check(details.get("result") == "ok", "entry %d: result %r" % (seq, details.get("result")))
        check("command" not in details, "entry %d still has a reconstructed command" % seq)
    # A word that is not UTF-8 cannot be recorded exactly: the command is refused and changes
    # nothing (site-d stays enrolled, no entry is added).
    rc, out = run("site", "revoke", "site-d", "--reason", b"caf\xe9", "--dir", "coord", ok=False)
    check(rc == 2 and "not valid UTF-8" in out, "a non-UTF-8 word: %d %s" % (rc, out))
    check(len(admin_entries()) == len(got), "a refused command left an entry")
    rc, out = run("site", "list", "--dir", "coord", "--json")
    state = {s["name"]: s["state"] for s in json.loads(out)}
    check(state.get("site-d") == "active", "a refused revoke changed site-d: %r" % state)
    # The report shows each command shell-quoted: bash parses it back into the same words.
    rc, out = run("audit", "report", "coord/coordinator.db", "--job", "1", "--out", "r.html",
                  "--key", "coord/identity.pub", ok=False)
    check(rc == 0, "report: " + out)
    page = open(os.path.join(WORK, "r.html"), encoding="utf-8").read()
    shown = {int(m.group(1)): html.unescape(m.group(2)) for m in
             re.finditer(r'<code class="argv[^"]*" data-entry="(\d+)">(.*?)</code>', page, re.S)}
    in_job = [(seq, argv) for (seq, action, _), (_, argv) in zip(got, ADMIN)
              if action.startswith("admin.job.")]
    check(sorted(shown) == [seq for seq, _ in in_job],
          "the report shows the commands of entries %s, not %s" % (sorted(shown), in_job))
    for seq, argv in in_job:
        if seq not in shown:
            continue
        p = subprocess.run(["bash", "-c", 'set -- %s\nprintf "%%s\\0" "$@"' % shown[seq]],
                           capture_output=True)
        words = p.stdout.decode("utf-8").split("\0")[:-1]
        check(p.returncode == 0 and words == argv,
              "entry %d: the report shows %r, which bash reads as %r, not %r"
              % (seq, shown[seq], words, argv))


def test_report_tail():
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(WORK, "coord", "coordinator.db"),
                         uri=True)
    covered = db.execute("SELECT max(tree_size) FROM audit_checkpoint").fetchone()[0]
    entries = db.execute("SELECT count(*) FROM audit_entry").fetchone()[0]
    db.close()
    page = open(os.path.join(WORK, "r.html"), encoding="utf-8").read()
    check(0 < covered < entries, "the log has no unsigned tail (%d of %d)" % (covered, entries))
    m = re.search(r'<p id="coverage" data-covered="(\d+)" data-entries="(\d+)"', page)
    check(m and int(m.group(1)) == covered and int(m.group(2)) == entries,
          "the report's coverage %s, not %d of %d" % (m and m.groups(), covered, entries))
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    check("Entries 0..%d of the log are covered by checkpoint #" % (covered - 1) in text,
          "the report does not say which entries are signed")
    check("Entries %d..%d were logged after it" % (covered, entries - 1) in text,
          "the report does not say which entries are not")
    check("Every number above comes from a signed entry" not in text, "the old claim is still made")
    signed = unsigned = 0
    for tag in re.finditer(r'<[^<>]*\bdata-entry="(\d+)"[^<>]*>', page):
        e, cls = int(tag.group(1)), re.search(r'class="([^"]*)"', tag.group(0))
        marked = cls is not None and "unsigned" in cls.group(1).split()
        check(marked == (e >= covered), "entry %d shown %s: %s" % (
            e, "as unsigned" if marked else "unmarked", tag.group(0)))
        signed += not marked
        unsigned += marked
    check(signed > 0 and unsigned > 0, "%d signed and %d unsigned elements" % (signed, unsigned))


def main():
    global BIN, WORK
    if len(sys.argv) != 2:
        raise SystemExit("usage: test_audit_cli.py CONDENSER_BINARY")
    if sys.version_info < (3, 7):
        print("python3 >= 3.7 needed; skipped", file=sys.stderr)
        sys.exit(77)
    BIN = os.path.abspath(sys.argv[1])
    WORK = tempfile.mkdtemp(prefix="cnd_audit_cli_")
    try:
        setup()
        test_key_ids()
        test_check_proof_edits()
        test_admin_argv()
        test_report_tail()
    finally:
        if FAILURES or os.environ.get("CND_KEEP_TMP"):
            print("kept " + WORK, file=sys.stderr)
        else:
            shutil.rmtree(WORK)
    if FAILURES:
        print("test_audit_cli: %d failure(s)" % len(FAILURES), file=sys.stderr)
        sys.exit(1)
    print("test_audit_cli: ok")


BIN = WORK = None
if __name__ == "__main__":
    main()
