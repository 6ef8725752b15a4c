"""trafficmngr.rule_words reads an `iptables -S` line exactly as shlex.split does, quicker."""
import shlex

import pytest

from labkit.flannel.trafficmngr import rule_words

LINES = ['-A FORWARD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
         '-P FORWARD DROP', '-N DOCKER',
         '-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2',
         '-A X -m comment --comment "a \\"b\\" c" -j ACCEPT', "-A X -m comment --comment 'x y' -j A",
         '-A X --comment a"b c"d -j A', '-A X --comment "" -j A', '"lead" x', 'x "trail"', '-A X "a b"c',
         '-A X c"a b" d', '  spaced   out  "q  q"  ', '"a""b"', '"a" "b"', '-A\t"tab q"\tx', '', '""', 'x""',
         '-A X -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT']


@pytest.mark.parametrize("line", LINES)
def test_the_same_words_as_shlex(line):
    assert rule_words(line) == shlex.split(line)


@pytest.mark.parametrize("line", ['-A X "unbalanced', '-A X \'open'])
def test_what_shlex_refuses_is_refused(line):
    with pytest.raises(ValueError):
        rule_words(line)
