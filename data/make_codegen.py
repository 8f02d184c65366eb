"""Writes the code-generation example: data/codegen/problems.jsonl and two models' logged answers.

The problems were written for Assay (they come from no benchmark): small Python functions, each
with the assertions that test it. The "logged answers" are hand-written too: coder-a answers most
problems right; coder-b gets more wrong, and one of its answers never returns (an infinite loop,
which pass_at_k's timeout turns into a failure). No model was called.

    python data/make_codegen.py
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "codegen"

# id, topic, family (problems that share a theme are not independent: dataset.cluster), task, entry point, tests,
# a right answer, a wrong answer
P = [
    (
        "str-reverse-words",
        "strings",
        "words",
        "Return the words of s in reverse order, separated by single spaces.",
        "reverse_words",
        "assert reverse_words('a b  c') == 'c b a'\nassert reverse_words('') == ''",
        "def reverse_words(s):\n    return ' '.join(reversed(s.split()))",
        "def reverse_words(s):\n    return s[::-1]",
    ),
    (
        "str-count-vowels",
        "strings",
        "letters",
        "Count the vowels (aeiou, either case) in s.",
        "count_vowels",
        "assert count_vowels('Assay') == 2\nassert count_vowels('xyz') == 0",
        "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
        "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)",
    ),
    (
        "str-is-palindrome",
        "strings",
        "letters",
        "True when s reads the same backwards, ignoring case and non-letters.",
        "is_palindrome",
        "assert is_palindrome('A man, a plan, a canal: Panama')\nassert not is_palindrome('assay')",
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalpha()]\n    return t == t[::-1]",
        "def is_palindrome(s):\n    return s == s[::-1]",
    ),
    (
        "str-title-case",
        "strings",
        "words",
        "Capitalise the first letter of every word of s, lower-casing the rest.",
        "title_case",
        "assert title_case('hello WORLD') == 'Hello World'",
        "def title_case(s):\n    return ' '.join(w[:1].upper() + w[1:].lower() for w in s.split(' '))",
        "def title_case(s):\n    return s.capitalize()",
    ),
    (
        "list-dedupe",
        "lists",
        "order",
        "Remove repeated items from xs, keeping the first occurrence of each, in order.",
        "dedupe",
        "assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]\nassert dedupe([]) == []",
        "def dedupe(xs):\n    return list(dict.fromkeys(xs))",
        "def dedupe(xs):\n    return sorted(set(xs))",
    ),
    (
        "list-chunks",
        "lists",
        "order",
        "Split xs into lists of n items (the last may be shorter).",
        "chunks",
        "assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]\nassert chunks([], 3) == []",
        "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs), n)]",
        "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs) - 1, n)]",
    ),
    (
        "list-running-max",
        "lists",
        "scan",
        "The running maximum of xs: item i is max(xs[:i + 1]).",
        "running_max",
        "assert running_max([1, 3, 2, 5, 4]) == [1, 3, 3, 5, 5]",
        "def running_max(xs):\n    out, m = [], None\n    for x in xs:\n        m = x if m is None else max(m, x)\n        out.append(m)\n    return out",
        "def running_max(xs):\n    return sorted(xs)",
    ),
    (
        "list-second-largest",
        "lists",
        "scan",
        "The second largest distinct value of xs, or None.",
        "second_largest",
        "assert second_largest([4, 1, 4, 3]) == 3\nassert second_largest([2, 2]) is None",
        "def second_largest(xs):\n    s = sorted(set(xs))\n    return s[-2] if len(s) > 1 else None",
        "def second_largest(xs):\n    return sorted(xs)[-2]",
    ),
    (
        "math-gcd",
        "math",
        "numbers",
        "The greatest common divisor of two non-negative integers.",
        "gcd",
        "assert gcd(12, 18) == 6\nassert gcd(0, 5) == 5",
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a",
        "def gcd(a, b):\n    while b:\n        a, b = b, a - b\n    return a",
    ),  # wrong: never returns
    (
        "math-is-prime",
        "math",
        "numbers",
        "True when n is a prime number.",
        "is_prime",
        "assert is_prime(2) and is_prime(97)\nassert not is_prime(1) and not is_prime(91)",
        "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True",
        "def is_prime(n):\n    return n % 2 == 1",
    ),
    (
        "math-digit-sum",
        "math",
        "digits",
        "The sum of the decimal digits of a non-negative integer n.",
        "digit_sum",
        "assert digit_sum(0) == 0\nassert digit_sum(9875) == 29",
        "def digit_sum(n):\n    return sum(int(d) for d in str(n))",
        "def digit_sum(n):\n    return n % 9",
    ),
    (
        "math-roman",
        "math",
        "digits",
        "The Roman numeral of 1 <= n <= 3999.",
        "to_roman",
        "assert to_roman(1994) == 'MCMXCIV'\nassert to_roman(4) == 'IV'",
        "def to_roman(n):\n    out = ''\n    for v, s in ((1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'),\n                 (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')):\n        while n >= v:\n            out, n = out + s, n - v\n    return out",
        "def to_roman(n):\n    return 'I' * n",
    ),
    (
        "dict-invert",
        "dicts",
        "mapping",
        "Invert a dict whose values are unique: values become keys.",
        "invert",
        "assert invert({'a': 1, 'b': 2}) == {1: 'a', 2: 'b'}",
        "def invert(d):\n    return {v: k for k, v in d.items()}",
        "def invert(d):\n    return dict(d)",
    ),
    (
        "dict-word-freq",
        "dicts",
        "mapping",
        "Count how often each lower-cased word occurs in text.",
        "word_freq",
        "assert word_freq('a B b') == {'a': 1, 'b': 2}",
        "def word_freq(text):\n    out = {}\n    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n    return out",
        "def word_freq(text):\n    return {w: 1 for w in text.split()}",
    ),
    (
        "dict-merge-sum",
        "dicts",
        "merging",
        "Merge two dicts of numbers, adding the values of shared keys.",
        "merge_sum",
        "assert merge_sum({'a': 1, 'b': 2}, {'b': 3}) == {'a': 1, 'b': 5}",
        "def merge_sum(a, b):\n    out = dict(a)\n    for k, v in b.items():\n        out[k] = out.get(k, 0) + v\n    return out",
        "def merge_sum(a, b):\n    return {**a, **b}",
    ),
    (
        "dict-group-by-len",
        "dicts",
        "merging",
        "Group words by their length: {length: [words in order]}.",
        "group_by_len",
        "assert group_by_len(['ab', 'c', 'de']) == {2: ['ab', 'de'], 1: ['c']}",
        "def group_by_len(words):\n    out = {}\n    for w in words:\n        out.setdefault(len(w), []).append(w)\n    return out",
        "def group_by_len(words):\n    return {len(w): [w] for w in words}",
    ),
]

# which problems each model gets right (coder-a: 13 of 16, coder-b: 8 of 16)
WRONG = {
    "coder-a": {"str-title-case", "list-second-largest", "math-roman"},
    "coder-b": {
        "str-reverse-words",
        "str-count-vowels",
        "list-chunks",
        "list-running-max",
        "math-gcd",
        "math-is-prime",
        "dict-word-freq",
        "dict-merge-sum",
    },
}


def answer(model: str, right: str, wrong: str, pid: str) -> str:
    code = wrong if pid in WRONG[model] else right
    # coder-a answers in a fenced block with a sentence around it, as chat models do
    return f"Here is the function:\n\n```python\n{code}\n```\n" if model == "coder-a" else code


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "logs").mkdir(exist_ok=True)
    with open(HERE / "problems.jsonl", "w", encoding="utf-8") as f:
        for pid, topic, family, task, entry, tests, _, _ in P:
            f.write(
                json.dumps(
                    {
                        "problem_id": pid,
                        "topic": topic,
                        "family": family,
                        "entry_point": entry,
                        "prompt": f"Write a Python function `{entry}`. {task}",
                        "tests": tests,
                    }
                )
                + "\n"
            )
    for model in WRONG:
        with open(HERE / "logs" / f"{model}.jsonl", "w", encoding="utf-8") as f:
            for pid, _, _, _, _, _, right, wrong in P:
                out = answer(model, right, wrong, pid)
                f.write(
                    json.dumps(
                        {
                            "problem_id": pid,
                            "output": out,
                            "prompt_tokens": 60,
                            "completion_tokens": len(out) // 4,
                            "latency_s": 0.8,
                        }
                    )
                    + "\n"
                )


if __name__ == "__main__":
    main()
