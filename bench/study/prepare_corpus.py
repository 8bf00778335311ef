"""prepare_corpus.py - the recipe study's prose corpus, from a Debian package
nobody on the project wrote: The Debian Administrator's Handbook (package
`debian-handbook`, GPL-2+ or CC-BY-SA-3.0, Raphaël Hertzog and Roland Mas).

Its English HTML pages (one per section) become plain-text documents: the
text of each paragraph (<div class="para">), without program listings
(<pre>), tables or index terms, paragraphs of one page separated by blank
lines. Every 10th page (in file-name order, starting with the 5th) is the
held-out split, never trained on; the rest is the training split:

  OUT/train/*.txt     one file per page (bitlab.corpus reads the folder)
  OUT/train.jsonl     the same paragraphs, one {"text": ...} line each (what a
                      bitlab.dataset trains on: one paragraph per row, padded)
  OUT/heldout.txt     the held-out pages, one after another
  OUT/SOURCE          the package, its version, the split and the counts

  python3 bench/study/prepare_corpus.py --out study-data [--deb FILE.deb]

Without --deb the package is fetched with `apt-get download` (no root
needed) into a temporary folder.
"""
import argparse
import glob
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

PAGES = "usr/share/doc/debian-handbook/html/en-US"


class Paragraphs(html.parser.HTMLParser):
    """The text of each <div class="para"> outside <pre>, tables and index terms."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paras, self.cur = [], None
        self.div_depth = 0      # open <div>s
        self.para_depth = None  # div depth at which the current paragraph opened
        self.skip = 0           # inside pre / table / script / style / an index term

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag in ("pre", "table", "script", "style") or (tag == "a" and cls == "indexterm"):
            self.skip += 1
        if tag == "div":
            self.div_depth += 1
            if cls == "para" and self.cur is None and not self.skip:
                self.cur, self.para_depth = [], self.div_depth

    def handle_endtag(self, tag):
        if tag in ("pre", "table", "script", "style") or (tag == "a" and self.skip):
            self.skip = max(0, self.skip - 1)
        if tag == "div":
            if self.cur is not None and self.div_depth == self.para_depth:
                text = re.sub(r"\s+", " ", "".join(self.cur)).strip()
                if len(text) >= 40:  # captions and stubs are not prose
                    self.paras.append(text)
                self.cur = None
            self.div_depth -= 1

    def handle_data(self, data):
        if self.cur is not None and not self.skip:
            self.cur.append(data)


def page_text(path):
    p = Paragraphs()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return "\n\n".join(p.paras)


def fetch_deb(tmp):
    subprocess.run(["apt-get", "download", "debian-handbook"], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    debs = glob.glob(os.path.join(tmp, "debian-handbook_*.deb"))
    if not debs:
        sys.exit("prepare_corpus: apt-get download debian-handbook gave no .deb")
    return debs[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deb", help="debian-handbook_*.deb (default: apt-get download)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bitlab_study_")
    try:
        deb = a.deb or fetch_deb(tmp)
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        pages = sorted(glob.glob(os.path.join(tmp, PAGES, "*.html")))
        if not pages:
            sys.exit(f"prepare_corpus: {deb} has no {PAGES}/*.html")
        train_dir = os.path.join(a.out, "train")
        shutil.rmtree(train_dir, ignore_errors=True)
        os.makedirs(train_dir)
        held, counts = [], {"train": [0, 0], "heldout": [0, 0]}
        jsonl = open(os.path.join(a.out, "train.jsonl"), "w", encoding="utf-8")
        for i, page in enumerate(pages):
            text = page_text(page)
            if not text:
                continue
            name = os.path.basename(page)[:-len(".html")]
            split = "heldout" if i % 10 == 4 else "train"
            counts[split][0] += 1
            counts[split][1] += len(text.encode())
            if split == "heldout":
                held.append(text)
            else:
                with open(os.path.join(train_dir, name + ".txt"), "w", encoding="utf-8") as f:
                    f.write(text + "\n")
                for para in text.split("\n\n"):
                    jsonl.write(json.dumps({"text": para}) + "\n")
        jsonl.close()
        with open(os.path.join(a.out, "heldout.txt"), "w", encoding="utf-8") as f:
            f.write("\n\n".join(held) + "\n")
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        with open(os.path.join(a.out, "SOURCE"), "w") as f:
            f.write(f"debian-handbook {version} (The Debian Administrator's Handbook, "
                    "GPL-2+ or CC-BY-SA-3.0), English HTML pages as plain text\n")
            for split, (n, b) in counts.items():
                f.write(f"{split}: {n} pages, {b} bytes\n")
        for split, (n, b) in counts.items():
            print(f"{split}: {n} pages, {b / 1024:.0f} KiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
