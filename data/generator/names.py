"""Chinese name pools (streets, compounds, communities, people)."""

from __future__ import annotations

import numpy as np

COMMUNITY_NAMES = [
    "解放",
    "延安",
    "胜利",
    "朝阳",
    "龙湖",
    "新华",
    "和平",
    "东风",
    "红旗",
    "光明",
    "幸福",
    "建设",
    "淮河",
    "青年",
    "友谊",
    "团结",
    "锦绣",
    "东海",
    "湖滨",
    "南山",
    "华夏",
    "曙光",
    "丰收",
    "长青",
    "翠苑",
    "纬四",
    "中荣",
    "宏业",
    "治淮",
    "涂山",
]

# Major streets (north-south then east-west pools), then lanes.
NS_STREETS = [
    "解放路",
    "胜利路",
    "延安路",
    "治淮路",
    "涂山路",
    "东海大道",
    "宏业路",
    "中荣街",
    "龙华路",
    "华光大道",
    "雪华路",
    "财院路",
    "工农路",
    "朝阳路",
]
EW_STREETS = [
    "淮河路",
    "纬四路",
    "南山路",
    "东风路",
    "红旗路",
    "和平路",
    "光彩大道",
    "长征路",
    "纬二路",
    "黄山大道",
    "学苑路",
    "兴中路",
    "工业路",
    "凤阳路",
]
TERTIARY_STREETS = [
    "青年街",
    "文化街",
    "友谊街",
    "团结街",
    "市场街",
    "建设街",
    "光明街",
    "新村街",
    "大庆街",
    "健康街",
    "育才街",
    "迎宾街",
    "向阳街",
    "民主街",
    "永安街",
    "裕民街",
    "交通街",
    "国庆街",
    "振兴街",
    "大同街",
    "复兴街",
    "安居街",
    "华新街",
    "公园街",
]
LANE_WORDS = [
    "青年",
    "幸福",
    "和平",
    "永安",
    "福寿",
    "吉祥",
    "太平",
    "三义",
    "四德",
    "五福",
    "六合",
    "百花",
    "桃园",
    "杏林",
    "柳荫",
    "槐树",
    "梧桐",
    "竹林",
    "兰花",
    "梅园",
    "荷塘",
    "菜园",
    "粮站",
    "油坊",
    "盐店",
    "铁匠",
    "染坊",
    "酱园",
    "书院",
    "仁和",
    "德胜",
    "同乐",
    "丰乐",
    "安乐",
    "长乐",
    "永乐",
    "康乐",
    "新安",
    "东升",
    "西平",
    "南安",
    "北兴",
    "宝兴",
    "天宁",
]

COMPOUND_WORDS = [
    "幸福",
    "阳光",
    "锦绣",
    "金色",
    "春晖",
    "翠竹",
    "龙湖",
    "湖畔",
    "淮畔",
    "御景",
    "华府",
    "盛世",
    "东方",
    "明珠",
    "怡景",
    "和谐",
    "康馨",
    "福瑞",
    "紫荆",
    "嘉禾",
    "丽都",
    "新城",
    "景苑",
    "兴业",
    "惠民",
    "安居",
    "凤凰",
    "银河",
    "玉兰",
    "海棠",
    "香樟",
    "银杏",
    "桂园",
    "碧水",
    "绿城",
    "蓝湾",
    "天鹅",
    "水岸",
    "学府",
    "书香",
    "铁路",
    "电力",
    "纺织",
    "机械",
    "粮食",
    "卷烟",
    "玻璃",
    "化工",
    "邮电",
    "财经",
    "医学",
    "交通",
    "教育",
    "供销",
]
SLAB_SUFFIX = ["小区", "新村", "家园", "苑", "宿舍区"]
TOWER_SUFFIX = ["花园", "华庭", "名邸", "公馆", "国际", "广场"]

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国志文斌海波宁晨浩宇欣悦婷雪梅琳")


def person_names(rng: np.random.Generator, n: int) -> list[str]:
    s = rng.choice(SURNAMES, n)
    g1 = rng.choice(GIVEN, n)
    g2 = rng.choice(GIVEN, n)
    two = rng.random(n) < 0.7
    return [a + b + (c if t else "") for a, b, c, t in zip(s, g1, g2, two, strict=True)]


def phones(rng: np.random.Generator, n: int) -> list[str]:
    prefix = rng.choice(
        ["139", "138", "137", "136", "158", "159", "152", "187", "188", "180", "133", "153"], n
    )
    rest = rng.integers(0, 10**8, n)
    return [f"{p}{r:08d}" for p, r in zip(prefix, rest, strict=True)]


def unique_picks(rng: np.random.Generator, pool: list[str], n: int) -> list[str]:
    """n distinct names from pool, numbered if the pool runs out."""
    order = rng.permutation(len(pool))
    out = []
    for i in range(n):
        base = pool[order[i % len(pool)]]
        out.append(base if i < len(pool) else f"{base}{i // len(pool) + 1}")
    return out
